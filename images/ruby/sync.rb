# Loaded through RUBYOPT before the user's program: output leaves at once, so a prompt printed
# with `print` reaches the client before `gets` waits.
$stdout.sync = true
$stderr.sync = true

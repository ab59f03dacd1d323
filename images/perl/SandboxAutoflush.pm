# Loaded through PERL5OPT before the user's program: STDOUT and STDERR flush after every print,
# so a prompt without a newline reaches the client before <STDIN> waits.
package SandboxAutoflush;
use strict;
use warnings;

select((select(STDERR), $| = 1)[0]);
$| = 1;

1;

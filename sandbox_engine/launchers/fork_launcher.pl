# Runs inside a sandbox as `perl -e <this>`: the launcher protocol of sandbox_engine.launch for an
# interpreter that cannot fork itself (Node.js), in the perl every Debian image has (perl-base).
# It starts the interpreter at once, before the header is read, as @WARM (its last argument the
# program's file: the run command's, main.js for TypeScript too): that child boots, then waits on fd 3 for the go (a byte; EOF: end quietly), and is the program.
# So it never holds the nonce, and a warm sandbox skips the interpreter's start-up. This process,
# not dumpable from right after the fork, reads the header, writes the files, lets the child go,
# waits for it and writes its EXIT mark as se-run does (images/runtime/se-run.c). In TESTS mode,
# and with stderr merged into stdout (which the child cannot arrange), the child is let go unused
# and se-run runs @RUN, as the sh launcher would. With a compile stage ($COMPILES) it waits for
# the engine's go line after the STARTED mark, as the sh launcher does, and $PRELUDE (sh) starts
# what the compile stage will ask for (TypeScript's warm compiler) before the header is read.
# ENV_*, MARK_*, SE_RUN, TESTS, @WARM, @RUN, $HELD (the variable the child gets only at the go),
# $SCRIPT_FIFO (the child reads its script from a FIFO instead of waiting on fd 3: PHP's),
# $COMPILES, $COMPILE_OUT (the FIFO a compile stage started ahead writes into, see relay),
# $COMPILE_TTY (where it learns a terminal's name, see tell_terminal), $PRELUDE
# and the syscall numbers (%SYSCALLS, by machine) are defined before this code by
# launch.fork_launcher.
use strict;
use warnings;
# An exec's failure is handled on the next line: no warning that it is unlikely to be reached.
no warnings 'exec';
use POSIX ();

my $tty = -t STDIN;
if ($tty && $> != 0) {
    # Raw before anything slow (the fork): a pool's sandbox may get its header at once.
    system('stty', 'raw', '-echo') == 0 or POSIX::_exit(126);
    syswrite(STDOUT, $MARK_READY);
}
if ($> == 0) {
    # kill(-1) as root would reach every process of the machine, were it run outside a sandbox.
    syswrite(STDERR, "launcher: refusing to run as root: it kills every other process of its user\n");
    POSIX::_exit(125);
}
my $calls = $SYSCALLS{(POSIX::uname())[4]} or do {
    syswrite(STDERR, "launcher: unknown machine\n");
    POSIX::_exit(125);
};
my ($PRCTL, $WAIT4, $CLOCK_GETTIME) = @$calls;
my $source = delete $ENV{$ENV_SOURCE} // 'main';
delete $ENV{$ENV_KILL_GROUP};
# The program's files, and what it writes, private to the sandbox's uid, as under the sh launcher.
umask(077);
system('/bin/sh', '-c', $PRELUDE) if $PRELUDE ne '';
# The child's script, a FIFO until the header comes: the interpreter starts up, then waits in its
# open (PHP's CLI opens its script after its modules' start-up) and reads the program from it.
if ($SCRIPT_FIFO) {
    unlink($source);
    POSIX::mkfifo($source, 0600) or POSIX::_exit(126);
}

# Perl marks new fds above $^F close-on-exec: the go's fd 3 (if pipe() gives it) must stay open.
$^F = 3;
pipe(my $go, my $go_write) or POSIX::_exit(126);
my $child = fork();
defined $child or POSIX::_exit(126);
if ($child == 0) {
    close $go_write;
    if ($SCRIPT_FIFO) {
        # It waits in the open of its script instead, the FIFO (see place_script): no fd 3.
        close $go;
        exec { $WARM[0] } @WARM;
        POSIX::_exit(127);
    }
    POSIX::dup2(fileno($go), 3) if fileno($go) != 3;
    # Held back until the go: Node's --require of stdin.js would take stdin at start-up.
    $ENV{"SANDBOX_HELD_$HELD"} = delete $ENV{$HELD} if defined $HELD && exists $ENV{$HELD};
    exec { $WARM[0] } @WARM;
    POSIX::_exit(127);
}
close $go;
my $fifo;    # the child's script, open for writing once the header came ($SCRIPT_FIFO)
# From here on no process of the same uid can read this one's memory (the nonce, soon).
syscall($PRCTL, 4, 0, 0, 0, 0) == 0 or POSIX::_exit(126);    # PR_SET_DUMPABLE

sub read_exactly {
    my ($size) = @_;
    my $data = '';
    while (length($data) < $size) {
        my $got = sysread(STDIN, $data, $size - length($data), length($data));
        if (!defined $got) {
            next if $!{EINTR};
            POSIX::_exit(126);
        }
        if ($got == 0) {
            # No header (or half of one): a child waiting for its script ends, as one waiting for
            # the go does on the go's closed pipe: on an empty script once it has it open, else
            # killed (it may still be starting up, before its open; it ran nothing of anyone's).
            if ($SCRIPT_FIFO) {
                $fifo ? close($fifo) : kill('KILL', $child);
            }
            POSIX::_exit(length($data) ? 126 : 0);
        }
    }
    return $data;
}

sub read_line {
    my $line = '';
    $line .= read_exactly(1) until $line =~ /\n\z/;
    return $line;
}

sub write_file {
    my ($name, $size) = @_;
    my $content = read_exactly($size);
    open(my $f, '>', $name) or POSIX::_exit(126);
    print {$f} $content;
    close($f) or POSIX::_exit(126);
}

sub place_script {
    # The FIFO opened for writing (the child's open returns, its read waits), then a regular file
    # with the program renamed over its name: the program finds its own file as it is, and a
    # fresh interpreter (se-run's, in TESTS mode) reads it; the child reads the FIFO, at the go.
    my ($content) = @_;
    my $deadline = now_us() + 30_000_000;
    until (sysopen($fifo, $source, POSIX::O_WRONLY() | POSIX::O_NONBLOCK())) {
        # No reader yet: the child still starts up, or died (then its end is the session's).
        POSIX::_exit(126) if !$!{ENXIO} || now_us() > $deadline || waitpid($child, POSIX::WNOHANG()) == $child;
        select(undef, undef, undef, 0.001);
    }
    my $flags = fcntl($fifo, POSIX::F_GETFL(), 0) or POSIX::_exit(126);
    fcntl($fifo, POSIX::F_SETFL(), $flags & ~POSIX::O_NONBLOCK()) or POSIX::_exit(126);
    open(my $f, '>', "$source.part") or POSIX::_exit(126);
    print {$f} $content;
    close($f) or POSIX::_exit(126);
    rename("$source.part", $source) or POSIX::_exit(126);
}

sub now_us {
    my $ts = "\0" x 16;
    syscall($CLOCK_GETTIME, 1, $ts);    # CLOCK_MONOTONIC
    my ($seconds, $nanoseconds) = unpack('q2', $ts);
    return $seconds * 1_000_000 + int($nanoseconds / 1000);
}

sub others_alive {
    # The processes this one may signal, but PID 1, itself and the spared, alive (not zombies).
    my %spared = map { $_ => 1 } (1, $$, @_);
    return () if !kill(0, -1) && $!{ESRCH};
    opendir(my $proc, '/proc') or return ();
    my @alive;
    for my $pid (grep { /^\d+$/ && !$spared{$_} } readdir($proc)) {
        open(my $f, '<', "/proc/$pid/stat") or next;
        my $stat = do { local $/; <$f> } // '';
        my ($state) = $stat =~ /\)\s+(\S)/;
        push @alive, $pid if defined $state && $state ne 'Z' && $state ne 'X' && kill(0, $pid);
    }
    return @alive;
}

sub wait_for_fifo {
    # The FIFO comes a moment after the compile stage's start.
    my ($path) = @_;
    my $deadline = now_us() + 10_000_000;
    until (-p $path) {
        POSIX::_exit(126) if now_us() > $deadline;
        select(undef, undef, undef, 0.01);
    }
}

sub tell_terminal {
    my ($path) = @_;
    wait_for_fifo($path);
    my $name = POSIX::ttyname(0) // POSIX::_exit(126);
    open(my $out, '>', $path) or POSIX::_exit(126);
    syswrite($out, "$name\n") or POSIX::_exit(126);
    close $out;
}

sub relay {
    # A process of its own copies the FIFO (made a moment after the compile stage's start) to
    # stderr, while this one waits for the engine's line.
    my ($path) = @_;
    wait_for_fifo($path);
    my $pid = fork();
    defined $pid or POSIX::_exit(126);
    return $pid if $pid;
    open(my $in, '<', $path) or POSIX::_exit(0);
    while (1) {
        my $got = sysread($in, my $data, 65536);
        next if !defined $got && $!{EINTR};
        POSIX::_exit(0) if !$got;
        my $done = 0;
        while ($done < $got) {
            my $wrote = syswrite(STDERR, $data, $got - $done, $done);
            POSIX::_exit(0) if !defined $wrote && !$!{EINTR};
            $done += $wrote // 0;
        }
    }
}

sub end_the_others {
    # As se-run: kill every other process of the user (but the spared: the waiting program), and
    # return once none is alive.
    my @spared = @_;
    my $deadline = now_us() + 2_000_000;
    while (now_us() < $deadline) {
        if (@spared) {
            my @alive = others_alive(@spared);
            return if !@alive;
            kill('KILL', @alive);
        } else {
            return if !kill('KILL', -1) && $!{ESRCH};
            return if !others_alive();
        }
        select(undef, undef, undef, 0.0002);
    }
}

my ($size, $cols, $rows, $merge, $nonce, $files, $mode) = split(' ', read_line());
my $program;
if ($SCRIPT_FIFO) {
    $program = read_exactly($size);
    place_script($program);
} else {
    write_file($source, $size);
}
for (1 .. $files) {
    # The further files, `<bytes> <name>` and their bytes; the server checked the names.
    my ($length, $name) = split(/ /, read_line(), 2);
    chomp $name;
    POSIX::_exit(126) if $name =~ m{^/} || grep { $_ eq '..' } split(m{/}, $name);
    my @folders = split(m{/}, $name);
    pop @folders;
    my $dir = '';
    for my $folder (grep { length } @folders) {
        $dir .= "$folder/";
        mkdir($dir);
    }
    write_file($name, $length);
}
if ($tty) {
    # No job control in a sandbox's terminal: Ctrl-Z is a plain character (see launch.py).
    # With a compile stage, no echo until the go: input typed meanwhile is the program's.
    my @echo = $COMPILES ? ('-echo') : ();
    system('stty', 'sane', @echo, 'susp', 'undef', 'cols', $cols, 'rows', $rows) == 0 or POSIX::_exit(126);
}
# The last mark, written before any code of the user's runs (see launch.py).
syswrite(STDOUT, "$MARK_STARTED$nonce\n") if $tty || $COMPILES;
if ($COMPILES) {
    # The engine compiles meanwhile, then lowers the limits to the run's and says go (an empty
    # line), or ends the sandbox with the compiler's exit code.
    my $rc = read_line();
    chomp $rc;
    if ($rc eq 'relay' && $tty) {
        # On a terminal the compile stage started ahead writes into it: its name, to the waiter.
        tell_terminal($COMPILE_TTY);
        $rc = read_line();
        chomp $rc;
    }
    elsif ($rc eq 'relay') {
        # A compile stage started ahead (see launch.compile_waiter): its output is ours, relayed
        # from its FIFO until the engine's next line, which comes once it read the stage's end.
        my $relay = relay($COMPILE_OUT);
        $rc = read_line();
        chomp $rc;
        kill('KILL', $relay);
        waitpid($relay, 0);
    }
    POSIX::_exit($rc =~ /^\d+$/ ? $rc : 126) if $rc ne '';
    system('stty', 'echo') if $tty;
    # What the compile stage may have left running does not run beside the program (as se-run).
    end_the_others($child);
}
# One pipe for both streams, so that the program's writes keep their order.
POSIX::dup2(1, 2) if $merge;
if ($mode eq $TESTS || $merge) {
    # A fresh interpreter per test, or one started with both streams on one pipe: se-run runs
    # it, as the sh launcher does; the child, unused, ends on the closed pipe.
    close $go_write;
    close $fifo if $fifo;    # an empty script: the child ends at once
    waitpid($child, 0);
    $ENV{$ENV_NONCE} = $nonce;
    exec { $SE_RUN } $SE_RUN, $mode, '--', @RUN;
    POSIX::_exit(127);
}

# The client's signals go to the whole process group: for the program, not for this one.
$SIG{$_} = sub { } for qw(HUP INT QUIT TERM USR1 USR2 WINCH TSTP TTIN TTOU);
my $start = now_us();
{
    local $SIG{PIPE} = 'IGNORE';    # a child already gone (a signal before the go)
    syswrite($go_write, 'g');
    close $go_write;
    if ($fifo) {
        # The go is the program itself, whole, then the end of the child's script.
        my $done = 0;
        while ($done < length($program)) {
            my $wrote = syswrite($fifo, $program, length($program) - $done, $done);
            last if !defined $wrote && !$!{EINTR};
            $done += $wrote // 0;
        }
        close $fifo;
    }
}
# wait4's rusage is the child's and its waited-for descendants', counted from its fork, when the
# launcher started: the interpreter's start-up is in its figures, as the program's own.
my ($status, $usage) = ("\0" x 4, "\0" x 144);
while (syscall($WAIT4, $child, $status, 0, $usage) != $child) {
    POSIX::_exit(126) unless $!{EINTR};
}
my $wall = now_us() - $start;
end_the_others();
$status = unpack('i', $status);
my $code = POSIX::WIFEXITED($status) ? POSIX::WEXITSTATUS($status) : -1;
my $signal = POSIX::WIFSIGNALED($status) ? POSIX::WTERMSIG($status) : 0;
my ($user_s, $user_us, $system_s, $system_us, $maxrss) = unpack('q5', $usage);
my $cpu = ($user_s + $system_s) * 1_000_000 + $user_us + $system_us;
syswrite(STDOUT, "$MARK_EXIT$nonce $code $signal $cpu $maxrss $wall -\n");
# stderr, a stream of its own (merged ones went to se-run above), is complete too (launch's END).
syswrite(STDERR, "$MARK_END$nonce\n") unless $tty;
# Up, idle, until the engine removes the sandbox (launch's LINGER); not after a SIGKILL.
select(undef, undef, undef, $LINGER) if $LINGER && $signal != 9;
POSIX::_exit($code >= 0 ? $code : 128 + $signal);

/*
 * se-run: runs a sandbox's program as its child and says how it ended, in marks the program
 * cannot forge (the launcher protocol of sandbox_engine/launch.py, whose names this follows).
 *
 *   se-run once -- command args...    the program once, on the sandbox's own stdin
 *   se-run tests -- command args...   the program once per test frame read from stdin:
 *                                     `<stdin bytes> <timeout ms> <args bytes>\n`, the
 *                                     arguments (each ended by NUL), then the test's stdin
 *   se-run compile -- command args... the compile stage once, beside the launcher waiting for
 *                                     its go: as `once`, but it kills no other process (the
 *                                     launcher is one; what the compiler leaves behind is
 *                                     killed by the program's se-run before it starts)
 *
 * After each run, on stdout, one write():
 *   \x1eSANDBOX-EXIT <nonce> <code> <signal> <cpu us> <max rss KiB> <wall us> <flag>\n
 * and in tests mode, when stderr is a stream of its own, \x1eSANDBOX-END <nonce>\n on stderr.
 * The nonce comes in the environment (SANDBOX_NONCE), which se-run clears before anything else
 * runs; it is not dumpable, so no process of the same uid can read its memory or environment.
 *
 * Every other process of the user is killed (kill(-1)) before a mark is written (but in
 * compile mode), so nothing left behind by one run writes after its mark, or into the next test.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* se-run's own failure (usage, a bad frame, no memory): not a code a program's run reports. */
#define FAILED 125
/* The most a frame's stdin, or its arguments, may hold: they are held in memory. */
#define MAX_BYTES (64UL << 20)
#define MAX_NONCE 64
/* How long the others may take to die after SIGKILL before the mark is written anyway. */
#define MAX_REAP_NS (2L * 1000 * 1000 * 1000)

static char nonce[MAX_NONCE + 1];
/* The signal mask se-run started with: its children get it back. */
static sigset_t start_mask;
/* The signals that end a wait: blocked but while waiting, so none is missed. */
static sigset_t wake_signals;
static volatile sig_atomic_t timed_out, aborted;

static void nothing(int sig) { (void)sig; }
static void on_alarm(int sig) { (void)sig; timed_out = 1; }
static void on_abort(int sig) { (void)sig; aborted = 1; }

static void handle(int sig, void (*handler)(int)) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = handler;
    action.sa_flags = SA_RESTART;
    sigemptyset(&action.sa_mask);
    sigaction(sig, &action, NULL);
}

static void fail(const char *what) {
    dprintf(2, "se-run: %s\n", what);
    exit(FAILED);
}

static long long micros(const struct timeval *tv) {
    return (long long)tv->tv_sec * 1000000 + tv->tv_usec;
}

static long long now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void write_all(int fd, const char *data, size_t size) {
    while (size > 0) {
        ssize_t done = write(fd, data, size);
        if (done < 0) {
            if (errno == EINTR)
                continue;
            return; /* nobody reads the stream any more: nothing to tell */
        }
        data += done;
        size -= (size_t)done;
    }
}

/* Reads up to size bytes, fewer only at EOF. */
static size_t read_full(int fd, char *buf, size_t size) {
    size_t got = 0;
    while (got < size) {
        ssize_t n = read(fd, buf + got, size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            fail("cannot read a test frame");
        if (n == 0)
            break;
        got += (size_t)n;
    }
    return got;
}

/* Whether a process se-run may signal, but PID 1 and itself, is still alive (not a zombie). */
static int others_alive(void) {
    if (kill(-1, 0) < 0 && errno == ESRCH)
        return 0;
    /* kill(-1, 0) counts zombies, and processes of other users: /proc tells them apart. */
    DIR *dir = opendir("/proc");
    if (dir == NULL)
        return 1;
    int alive = 0;
    pid_t self = getpid();
    struct dirent *entry;
    while (!alive && (entry = readdir(dir)) != NULL) {
        char *end;
        long pid = strtol(entry->d_name, &end, 10);
        if (*end != '\0' || pid <= 1 || pid == self)
            continue;
        char path[64], line[512];
        snprintf(path, sizeof path, "/proc/%ld/stat", pid);
        FILE *f = fopen(path, "re");
        if (f == NULL)
            continue;
        size_t n = fread(line, 1, sizeof line - 1, f);
        fclose(f);
        line[n] = '\0';
        char *state = strrchr(line, ')');
        if (state == NULL || state[1] == '\0' || state[2] == 'Z' || state[2] == 'X')
            continue;
        alive = kill((pid_t)pid, 0) == 0;
    }
    closedir(dir);
    return alive;
}

/* Kills every other process of the user (kill(-1) spares PID 1 and se-run), reaps se-run's own,
 * and returns once none is left alive: a write of theirs cannot come after what se-run writes
 * next. */
static void end_the_others(void) {
    struct timespec pause = {0, 200 * 1000};
    for (long waited = 0; waited < MAX_REAP_NS; waited += pause.tv_nsec) {
        kill(-1, SIGKILL);
        while (waitpid(-1, NULL, WNOHANG) > 0) {
        }
        if (!others_alive())
            return;
        nanosleep(&pause, NULL);
    }
}

struct run {
    int status;
    struct rusage usage;
    long long wall_us;
    const char *flag;
};

/* The child side of a run: the program, exec'd with se-run's start mask and its handlers reset. */
static void exec_program(char **argv, int stdin_fd) {
    if (stdin_fd >= 0 && dup2(stdin_fd, 0) < 0)
        _exit(FAILED);
    sigprocmask(SIG_SETMASK, &start_mask, NULL);
    execvp(argv[0], argv);
    int error = errno;
    dprintf(2, "se-run: %s: %s\n", argv[0], strerror(error));
    /* As a shell says it: 127 for a command not found, 126 for one found but not runnable. */
    _exit(error == ENOENT || error == ENOTDIR ? 127 : 126);
}

/* Forks the program and waits for it: until timeout_ms (0: no limit) or an abort (tests mode).
 *
 * Why the figures are exact: wait4's rusage is that of the child and of the descendants it waited
 * for, counted from the fork. The child is forked for this run, in a sandbox already warm (the
 * image, the launcher and se-run are up), so no start-up of the sandbox and nothing of an earlier
 * run is in them: user plus system time are the program's own. Its maximum resident set starts
 * from se-run's own at the fork (a small static program holding no frame: the test's stdin is
 * unmapped before, see run_test), then the program's peak after exec. The wall time is from just
 * before the fork to the reap. Descendants left running and never waited for are not counted:
 * they are killed at the run's end, and their time is theirs. */
static struct run run_program(char **argv, int stdin_fd, long timeout_ms, int abortable) {
    struct run run = {.flag = "-"};
    struct itimerval timer = {{0, 0}, {timeout_ms / 1000, (timeout_ms % 1000) * 1000}};
    struct timespec zero = {0, 0};
    /* A timer or an abort of the previous run that came after its end is not this run's. */
    while (sigtimedwait(&wake_signals, NULL, &zero) > 0) {
    }
    timed_out = aborted = 0;
    long long start = now_us();
    pid_t pid = fork();
    if (pid < 0)
        fail("cannot fork the program");
    if (pid == 0)
        exec_program(argv, stdin_fd);
    if (timeout_ms > 0)
        setitimer(ITIMER_REAL, &timer, NULL);
    int killed = 0;
    sigset_t waiting = start_mask;
    sigdelset(&waiting, SIGCHLD);
    sigdelset(&waiting, SIGALRM);
    sigdelset(&waiting, SIGUSR2);
    for (;;) {
        pid_t done = wait4(pid, &run.status, WNOHANG, &run.usage);
        if (done == pid)
            break;
        if (done < 0 && errno != EINTR)
            fail("lost the program");
        if (!killed && (timed_out || (abortable && aborted))) {
            kill(pid, SIGKILL);
            killed = 1;
            run.flag = timed_out ? "timeout" : "abort";
        }
        /* Blocked outside of this call, SIGCHLD, SIGALRM and SIGUSR2 cannot slip in before it. */
        sigsuspend(&waiting);
    }
    run.wall_us = now_us() - start;
    /* An abort goes to the whole process group: the program may have died of it before se-run
     * could kill it. Pending or handled, it was for this run. */
    sigset_t pending;
    sigpending(&pending);
    if (abortable && !killed && (aborted || sigismember(&pending, SIGUSR2)))
        run.flag = "abort";
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &off, NULL);
    return run;
}

static void report(const struct run *run, int end_on_stderr) {
    char mark[256];
    int code = WIFEXITED(run->status) ? WEXITSTATUS(run->status) : -1;
    int sig = WIFSIGNALED(run->status) ? WTERMSIG(run->status) : 0;
    long long cpu = micros(&run->usage.ru_utime) + micros(&run->usage.ru_stime);
    int size = snprintf(mark, sizeof mark, "\036SANDBOX-EXIT %s %d %d %lld %ld %lld %s\n", nonce, code,
                        sig, cpu, run->usage.ru_maxrss, run->wall_us, run->flag);
    /* One write each: on a pipe, a write this short is never split or interleaved. */
    write_all(1, mark, (size_t)size);
    if (end_on_stderr) {
        size = snprintf(mark, sizeof mark, "\036SANDBOX-END %s\n", nonce);
        write_all(2, mark, (size_t)size);
    }
}

/* A frame's header: three decimal numbers, separated by a space, ended by \n. Read a byte at a
 * time, so no byte of what follows is taken. Returns 0 at EOF before its first byte. */
static int read_frame_header(unsigned long numbers[3]) {
    int count = 0, digits = 0;
    numbers[0] = numbers[1] = numbers[2] = 0;
    for (int bytes = 0;; bytes++) {
        char c;
        ssize_t n = read(0, &c, 1);
        if (n < 0 && errno == EINTR) {
            bytes--;
            continue;
        }
        if (n <= 0) {
            if (bytes == 0 && n == 0)
                return 0;
            fail("the input ended inside a test frame's header");
        }
        if (c >= '0' && c <= '9' && digits < 12) {
            numbers[count] = numbers[count] * 10 + (unsigned long)(c - '0');
            digits++;
        } else if (c == ' ' && digits > 0 && count < 2) {
            count++;
            digits = 0;
        } else if (c == '\n' && digits > 0 && count == 2) {
            return 1;
        } else {
            fail("a test frame's header is not `<stdin bytes> <timeout ms> <args bytes>`");
        }
    }
}

static char *read_bytes(size_t size, const char *what) {
    if (size == 0)
        return NULL;
    if (size > MAX_BYTES) {
        dprintf(2, "se-run: a test's %s holds more than %lu bytes\n", what, MAX_BYTES);
        exit(FAILED);
    }
    char *data = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (data == MAP_FAILED)
        fail("no memory for a test frame");
    if (read_full(0, data, size) != size)
        fail("the input ended inside a test frame");
    return data;
}

/* One test frame: the program with the frame's arguments, its stdin a pipe fed by a writer of its
 * own (a program that never reads cannot block se-run), killed at the timeout. */
static void run_test(char **command, int ncommand, int end_on_stderr) {
    unsigned long header[3];
    if (!read_frame_header(header))
        exit(0);
    size_t stdin_size = header[0], args_size = header[2];
    long timeout_ms = (long)header[1];
    char *args = read_bytes(args_size, "arguments");
    if (args_size > 0 && args[args_size - 1] != '\0')
        fail("a test's arguments must each end with NUL");
    int nargs = 0;
    for (size_t i = 0; i < args_size; i++)
        nargs += args[i] == '\0';
    char **argv = calloc((size_t)(ncommand + nargs + 1), sizeof *argv);
    if (argv == NULL)
        fail("no memory for a test's arguments");
    memcpy(argv, command, (size_t)ncommand * sizeof *argv);
    for (size_t i = 0, n = (size_t)ncommand; i < args_size; i += strlen(args + i) + 1)
        argv[n++] = args + i;
    char *input = read_bytes(stdin_size, "stdin");

    int pipe_fds[2];
    if (pipe2(pipe_fds, O_CLOEXEC) < 0)
        fail("cannot make a pipe");
    pid_t writer = fork();
    if (writer < 0)
        fail("cannot fork the stdin writer");
    if (writer == 0) {
        /* A program that exits without reading all of it: the rest is dropped, quietly. */
        signal(SIGPIPE, SIG_IGN);
        close(pipe_fds[0]);
        write_all(pipe_fds[1], input, stdin_size);
        _exit(0);
    }
    close(pipe_fds[1]);
    /* The writer has its copy; se-run's would count in the program's maximum resident set. */
    if (input != NULL)
        munmap(input, stdin_size);
    struct run run = run_program(argv, pipe_fds[0], timeout_ms, 1);
    close(pipe_fds[0]);
    end_the_others();
    report(&run, end_on_stderr);
    free(argv);
    if (args != NULL)
        munmap(args, args_size);
}

/* Whether stderr is a stream of its own: no terminal, and not stdout's file (merged). */
static int stderr_apart(void) {
    struct stat out, err;
    if (isatty(2) || fstat(1, &out) < 0 || fstat(2, &err) < 0)
        return 0;
    return out.st_dev != err.st_dev || out.st_ino != err.st_ino;
}

static void take_nonce(void) {
    char *value = getenv("SANDBOX_NONCE");
    size_t size = value == NULL ? 0 : strlen(value);
    if (size == 0 || size > MAX_NONCE || strspn(value, "0123456789abcdefABCDEF") != size)
        fail("SANDBOX_NONCE must hold the nonce of the marks (hexadecimal)");
    memcpy(nonce, value, size + 1);
    /* Out of what children inherit; then the whole entry, name and value, overwritten in place
     * where /proc/<pid>/environ reads: gVisor shows that file even of a process that is not
     * dumpable (its mem it refuses), and not even the name should suggest a nonce is near. */
    char *entry = value - strlen("SANDBOX_NONCE=");
    unsetenv("SANDBOX_NONCE");
    memset(entry, 'x', strlen("SANDBOX_NONCE=") + size);
}

int main(int argc, char **argv) {
    /* First: from here on no process of the same uid can read se-run's memory or environment. */
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    take_nonce();
    if (argc < 4 || strcmp(argv[2], "--") != 0 ||
        (strcmp(argv[1], "once") != 0 && strcmp(argv[1], "tests") != 0 && strcmp(argv[1], "compile") != 0))
        fail("usage: se-run once|tests|compile -- command [args...]");
    /* kill(-1) as root would reach every process of the machine, were it run outside a sandbox. */
    if (geteuid() == 0)
        fail("refusing to run as root: it kills every other process of its user");
    int tests = strcmp(argv[1], "tests") == 0;
    int compiling = strcmp(argv[1], "compile") == 0;

    /* Handlers, not SIG_IGN: the client's signals, sent to the whole process group, reach the
     * program (an exec resets handlers to the default) and leave se-run be. */
    static const int passed[] = {SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGWINCH,
                                 SIGTSTP, SIGTTIN, SIGTTOU, SIGPIPE, SIGCHLD};
    for (size_t i = 0; i < sizeof passed / sizeof passed[0]; i++)
        handle(passed[i], nothing);
    handle(SIGALRM, on_alarm);
    /* SIGUSR2 (launch.ABORT_SIGNAL) ends the current test's run; in once mode it is the client's. */
    handle(SIGUSR2, tests ? on_abort : nothing);
    sigemptyset(&wake_signals);
    sigaddset(&wake_signals, SIGCHLD);
    sigaddset(&wake_signals, SIGALRM);
    sigaddset(&wake_signals, SIGUSR2);
    sigprocmask(SIG_BLOCK, &wake_signals, &start_mask);

    char **command = argv + 3;
    int ncommand = argc - 3;
    /* What the compile stage may have left running does not run beside the program. */
    if (!compiling)
        end_the_others();
    if (tests) {
        int end_on_stderr = stderr_apart();
        for (;;)
            run_test(command, ncommand, end_on_stderr);
    }
    struct run run = run_program(command, -1, 0, 0);
    if (!compiling)
        end_the_others();
    report(&run, 0);
    return WIFEXITED(run.status) ? WEXITSTATUS(run.status) : 128 + WTERMSIG(run.status);
}

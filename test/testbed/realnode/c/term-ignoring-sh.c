/* /usr/local/bin/sh of the testbed's "sigterm" kernel image: PID 1 that ignores SIGTERM.
 * Runs the real shell (/bin/dash) with the same arguments as a child, reaps every child (it is the
 * container's init), and exits with the shell's status. The child gets SIGTERM back at its default,
 * so only PID 1 ignores it: a container of this image stops only when the grace period ends (SIGKILL). */
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
  (void)argc;
  signal(SIGTERM, SIG_IGN);
  pid_t child = fork();
  if (child < 0) { perror("fork"); return 1; }
  if (child == 0) {
    signal(SIGTERM, SIG_DFL);
    argv[0] = "sh";
    execv("/bin/dash", argv);
    perror("exec /bin/dash");
    _exit(127);
  }
  for (;;) {
    int status;
    pid_t p = wait(&status);
    if (p < 0) return 1;
    if (p == child) return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
}

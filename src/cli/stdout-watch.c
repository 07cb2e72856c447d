// Exits 0 once nobody reads the pipe (or socket) that is its stdout any more (the reader of `podwire trace | head -3` has gone),
// which podwire takes as the reader's going away: a pipe's writer learns of it only when it next writes, and on a
// quiet node podwire may have nothing to write for a long time. Ends with podwire (PR_SET_PDEATHSIG), and never
// writes: its copy of the pipe is only watched. Usage: stdout-watch PARENT_PID
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <unistd.h>

int main(int argc, char **argv) {
  if (argc != 2) return 2;
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) return 2;
  // The parent may have died before the line above: then its death signal never comes.
  if (getppid() != (pid_t)atoi(argv[1])) return 3;
  struct pollfd out = {.fd = STDOUT_FILENO, .events = 0};
  for (;;) {
    if (poll(&out, 1, -1) < 0) continue;
    if (out.revents & (POLLERR | POLLHUP)) return 0;
    if (out.revents & POLLNVAL) return 2;
  }
}

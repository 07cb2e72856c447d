/*
 * pause: the lab node's infra ("pause") container, built here from source.
 *
 * No image registry is reachable from the lab, so podwire compiles this file
 * statically and packs it as a one-layer OCI image (src/lab/image.ts). Like
 * Kubernetes' pause it only holds the pod sandbox's namespaces open: it sleeps
 * in pause(), leaves with status 0 on SIGINT or SIGTERM, and, being PID 1 of
 * the pod when the PID namespace is shared, reaps orphans so they do not pile
 * up as zombies. The lab also runs it as its "application" container, so any
 * arguments other than a leading -v are accepted and ignored.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define PAUSE_VERSION "podwire-pause 0.1.0"

static void on_stop(int signo) {
  (void)signo;
  _exit(0);
}

static void on_child(int signo) {
  (void)signo;
  /* One SIGCHLD may stand for several exits, so reap until none is left. */
  int saved_errno = errno;
  while (waitpid(-1, NULL, WNOHANG) > 0) {
  }
  errno = saved_errno;
}

static void handle(int signo, void (*handler)(int), int flags) {
  struct sigaction action;
  memset(&action, 0, sizeof(action));
  action.sa_handler = handler;
  action.sa_flags = flags;
  sigemptyset(&action.sa_mask);
  if (sigaction(signo, &action, NULL) != 0) {
    perror("pause: sigaction");
    _exit(1);
  }
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "-v") == 0) {
    printf("%s\n", PAUSE_VERSION);
    return 0;
  }

  /* As PID 1 the kernel drops signals that have no handler, so these are
   * what make the container stoppable at all. */
  handle(SIGINT, on_stop, 0);
  handle(SIGTERM, on_stop, 0);
  handle(SIGCHLD, on_child, SA_NOCLDSTOP | SA_RESTART);

  for (;;) {
    pause();
  }
}

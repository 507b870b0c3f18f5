/*
 * The sandbox ("pause") container of every pod on the local node: it holds
 * the pod's namespaces open and does nothing else. Built static (no libc in
 * the image) by deploy/local/pause-image.
 *
 * It is PID 1 of the pod when the pod shares its process namespace, so it
 * must reap orphans the way init does, or they stay zombies. SIGTERM and
 * SIGINT end it at once with status 0, so stopping a pod never waits for the
 * kill timeout.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void stop(int sig) {
  (void)sig;
  _exit(0);
}

static void reap(int sig) {
  (void)sig;
  int saved = errno; /* a handler must not change errno under the interrupted code */
  while (waitpid(-1, NULL, WNOHANG) > 0) {
  }
  errno = saved;
}

static void on(int sig, void (*handler)(int), int flags) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = handler;
  sa.sa_flags = flags;
  sigemptyset(&sa.sa_mask);
  if (sigaction(sig, &sa, NULL) < 0) {
    perror("pause: sigaction");
    exit(1);
  }
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "-v") == 0) {
    puts("pause (configmirror local node)");
    return 0;
  }
  if (getpid() != 1) {
    /* Not fatal: a shared PID namespace is optional, and tests run it bare. */
    fputs("pause: not PID 1, orphans will not be reaped here\n", stderr);
  }
  on(SIGINT, stop, 0);
  on(SIGTERM, stop, 0);
  /* SA_NOCLDSTOP: a stopped child is not an exited one. */
  on(SIGCHLD, reap, SA_NOCLDSTOP | SA_RESTART);
  for (;;) {
    pause();
  }
}

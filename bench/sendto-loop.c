// sendto-loop.c: an unrelated process's hot syscall for bench/sendto-overhead.ts — N loopback UDP sendto calls.
// Usage: sendto-loop [N]; prints the mean nanoseconds per call (CLOCK_MONOTONIC around the loop, after a warm-up).
// The receiving socket is never read: once its buffer is full the kernel drops what arrives, and each sendto
// still walks the whole send path (syscall entry and exit, where the tracepoints sit, UDP, loopback).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>

static double now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

int main(int argc, char **argv) {
  long n = argc > 1 ? atol(argv[1]) : 200000;
  if (n < 1) {
    fprintf(stderr, "sendto-loop: N must be at least 1\n");
    return 2;
  }
  struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = 0};
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof to;
  int rx = socket(AF_INET, SOCK_DGRAM, 0);
  int tx = socket(AF_INET, SOCK_DGRAM, 0);
  if (rx < 0 || tx < 0 || bind(rx, (struct sockaddr *)&to, sizeof to) < 0 ||
      getsockname(rx, (struct sockaddr *)&to, &length) < 0) {
    perror("sendto-loop: loopback UDP socket");
    return 1;
  }
  char payload[64] = "podwire sendto-overhead";
  for (long i = 0; i < 10000; i++) sendto(tx, payload, sizeof payload, 0, (struct sockaddr *)&to, sizeof to);
  double start = now_ns();
  for (long i = 0; i < n; i++) {
    if (sendto(tx, payload, sizeof payload, 0, (struct sockaddr *)&to, sizeof to) < 0) {
      perror("sendto-loop: sendto");
      return 1;
    }
  }
  double elapsed = now_ns() - start;
  printf("%.1f\n", elapsed / (double)n);
  return 0;
}

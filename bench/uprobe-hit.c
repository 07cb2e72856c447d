// uprobe-hit.c: what one uprobe hit costs the probed process, for bench/uprobe-hit.ts.
// Usage: uprobe-hit N; prints the mean nanoseconds per call of go_like_entry (CLOCK_MONOTONIC around N calls).
// go_like_entry begins like a Go function on amd64: the stack check `cmp 16(reg), %rsp` then a conditional jump
// (here to the next instruction; the "stack" it compares with is a zeroed buffer, so the jump is not taken
// either way). The bench puts a uprobe on the CMP (the kernel single-steps a copy of it) or on the JBE (the
// kernel emulates it), the two places podwire has chosen between. The labels carry no ELF type or size, so that
// bpftrace takes their addresses as it takes those in a stripped CNI plugin (with --unsafe, unchecked).
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

__asm__(".text\n"
        ".globl go_like_entry\n"
        "go_like_entry:\n"
        "  cmp 16(%rdi), %rsp\n"
        "  .globl go_like_jump\n"
        "go_like_jump:\n"
        "  jbe 1f\n"
        "1:\n"
        "  mov %rdi, %rax\n"
        "  ret\n");

long go_like_entry(void *frame);

static double now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

int main(int argc, char **argv) {
  long n = argc > 1 ? atol(argv[1]) : 100000;
  if (n < 1) {
    fprintf(stderr, "uprobe-hit: N must be at least 1\n");
    return 2;
  }
  long frame[4] = {0};
  long sum = 0;
  double start = now_ns();
  for (long i = 0; i < n; i++) sum += go_like_entry(frame);
  double elapsed = now_ns() - start;
  printf("%.1f\n", elapsed / (double)n + (double)(sum & 0));
  return 0;
}

// Preloaded into bpftrace (LD_PRELOAD) so that it reads its perf buffers on a timer instead of waking for each event.
// bpftrace 0.17 opens its BPF output buffers with wakeup_events=1: every printf in a probe queues a wake-up of
// bpftrace, an IPI on a virtual machine, paid by the traced thread (see `npm run bench:uprobe-hit`), and bpftrace
// runs once per event. With this library:
// - perf_event_open of a BPF output event asks for a wake-up only when a quarter of the buffer is full (bursts are
//   still read before the buffer overflows);
// - epoll_wait on a set holding those buffers waits at most PODWIRE_BPFTRACE_POLL_MS (default 100, as podwire's
//   runner sets it) and reports every buffer that holds data, read from its mmap'd header after the wait: a batch
//   reads everything committed before the wait returned, on every CPU, which is what probes/tick.bt's ticks say.
// - a signal bpftrace handles still stops it, and an exit signal during a batch waits for its end: see note_signal;
// - bpftrace's stdout, when a pipe, holds 1 MiB (see configure);
// - the perf events of its probes are closed by two threads at once, not one after the other: see close_probe.
// Nothing else changes: other syscalls, mmaps and epoll sets pass through untouched. It only ever runs inside
// bpftrace, never in a traced process. Built by `npm run build` (scripts/copy-assets.mjs) when a C compiler is there.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/perf_event.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

// One per CPU's buffer; beyond this many, buffers are left as bpftrace asked (woken per event).
#define MAX_RINGS 1024

struct ring {
  int fd;
  int epfd; // -1 until bpftrace adds it to an epoll set
  epoll_data_t data;
  struct perf_event_mmap_page *page;
};

static struct ring rings[MAX_RINGS];
static int ring_count;
static int poll_ms = 100;
static uint32_t watermark_bytes = 64 * 4096 / 4;

__attribute__((constructor)) static void configure(void) {
  const char *ms = getenv("PODWIRE_BPFTRACE_POLL_MS");
  if (ms && atoi(ms) > 0) poll_ms = atoi(ms);
  // bpftrace's own setting of the buffer size (pages per CPU), which the wake-up threshold is a quarter of.
  const char *pages = getenv("BPFTRACE_PERF_RB_PAGES");
  if (pages && atoi(pages) > 0) watermark_bytes = (uint32_t)atoi(pages) * 4096 / 4;
  // podwire reads bpftrace's stdout (a FIFO) on a timer. bpftrace 0.17 drops what it has left to print when a SIGINT
  // comes while it is blocked writing to a full pipe, so its pipe holds 1 MiB (the default most a process may ask
  // for) instead of 64 KiB. Not a pipe, or refused: left as it is.
  fcntl(STDOUT_FILENO, F_SETPIPE_SZ, 1 << 20);
}

// bpftrace 0.17 notices SIGINT/SIGTERM only as an EINTR of its epoll_wait: a signal that comes while it prints a
// batch is forgotten, and bpftrace runs on. Woken per event, bpftrace is blocked in epoll_wait almost all the time;
// reading on a timer it spends more time out of it, where a SIGINT would be lost. So each handler bpftrace installs
// is wrapped to note the signal, and the next epoll_wait on a set of ours returns EINTR as a blocked one would have.
static volatile sig_atomic_t signalled;
static struct sigaction handlers[NSIG]; // bpftrace's own, called by note_signal

// bpftrace 0.17 drops every event it reads once its exit signal has been handled (its printer returns at once), so
// a SIGINT/SIGTERM that comes while it reads a batch would lose the rest of that batch, which its drain after the
// stop no longer finds in the buffers. Such a signal is handed to bpftrace's handler at the next epoll_wait instead:
// the batch is printed, and what is still in the buffers is left to the drain.
static volatile sig_atomic_t in_batch;
static volatile sig_atomic_t deferred;
static siginfo_t deferred_info;

static void call_own(int sig, siginfo_t *info, void *context) {
  const struct sigaction *own = &handlers[sig];
  if (own->sa_flags & SA_SIGINFO)
    own->sa_sigaction(sig, info, context);
  else
    own->sa_handler(sig);
}

static void note_signal(int sig, siginfo_t *info, void *context) {
  signalled = 1;
  if (in_batch && (sig == SIGINT || sig == SIGTERM)) {
    if (info) deferred_info = *info;
    deferred = sig;
    return;
  }
  call_own(sig, info, context);
}

/** The exit signal that came during the last batch, to bpftrace's handler now that the batch is read. */
static void release_deferred(void) {
  in_batch = 0;
  int sig = deferred;
  deferred = 0;
  if (sig) call_own(sig, &deferred_info, NULL);
}

int sigaction(int sig, const struct sigaction *act, struct sigaction *old) {
  typedef int (*sigaction_fn)(int, const struct sigaction *, struct sigaction *);
  static sigaction_fn real;
  if (!real) real = (sigaction_fn)dlsym(RTLD_NEXT, "sigaction");
  int handled = act && sig > 0 && sig < NSIG &&
                ((act->sa_flags & SA_SIGINFO) ||
                 (act->sa_handler != SIG_DFL && act->sa_handler != SIG_IGN));
  struct sigaction before = sig > 0 && sig < NSIG ? handlers[sig] : (struct sigaction){0};
  int result;
  if (handled) {
    // Set first: a signal that comes while the wrapper is being installed finds the new handler.
    handlers[sig] = *act;
    struct sigaction wrapped = *act;
    wrapped.sa_flags |= SA_SIGINFO;
    wrapped.sa_sigaction = note_signal;
    result = real(sig, &wrapped, old);
    if (result != 0) handlers[sig] = before;
  } else {
    result = real(sig, act, old);
  }
  // Whoever asks what was installed is told bpftrace's handler, not the wrapper.
  if (result == 0 && old && (old->sa_flags & SA_SIGINFO) && old->sa_sigaction == note_signal)
    *old = before;
  return result;
}

// Closing a probe's perf event is where bpftrace 0.17 spends its stop: the kernel waits for RCU grace periods
// before it lets go of each one (three for a uprobe, about 25 ms each here: perf_event_detach_bpf_prog,
// uprobe_unregister_sync and tracepoint_synchronize_unregister), and bpftrace closes its probes one after the other,
// also when it was signalled because the daemon died. Two of those waits are taken under one kernel mutex
// (event_mutex) and the third under another (bpf_event_mutex), so closes from two threads overlap the two and share
// grace periods: podwire's program (46 plugin uprobes, 24 tracepoints) lets go in about 2.5 s instead of 4.4 s
// (bench/README.md, stop-time). More threads gain nothing (the locks), and would take event_mutex from the janitor
// removing the CRI events (janitor.sh) more often. close() of a probe's perf event hands it to the closers and
// returns at once; bpftrace's exit waits for them (finish_closes), so bpftrace is gone only once nothing of it is
// attached. The fd number stays taken until its close is done, so bpftrace is not handed the same number meanwhile.
#define MAX_PROBE_FDS 65536
#define CLOSERS 2

static unsigned char probe_fds[MAX_PROBE_FDS]; // 1: a perf event of a probe (not an output buffer), not closed yet

static int real_close(int fd) {
  typedef int (*close_fn)(int);
  static close_fn real;
  if (!real) real = (close_fn)dlsym(RTLD_NEXT, "close");
  return real(fd);
}

static pthread_mutex_t closing_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t closing_changed = PTHREAD_COND_INITIALIZER;
static int closing[MAX_PROBE_FDS]; // fds waiting for a closer
static int closing_count;
static int closing_busy; // closes a closer has taken and not finished
static int closers;

static void *closer(void *unused) {
  (void)unused;
  pthread_mutex_lock(&closing_lock);
  for (;;) {
    while (closing_count == 0) pthread_cond_wait(&closing_changed, &closing_lock);
    int fd = closing[--closing_count];
    closing_busy++;
    pthread_mutex_unlock(&closing_lock);
    real_close(fd);
    pthread_mutex_lock(&closing_lock);
    closing_busy--;
    pthread_cond_broadcast(&closing_changed);
  }
  return NULL;
}

/** Queues fd for the closers, starting them the first time; 0 when it cannot (the caller closes it itself). */
static int close_probe(int fd) {
  pthread_mutex_lock(&closing_lock);
  if (closers == 0) {
    // bpftrace is stopping. When the daemon was killed, nobody reads bpftrace's stdout any more, and its last
    // prints would end it by SIGPIPE: its main thread would be gone (a zombie) while the kernel closes what is left
    // one after the other in its last thread. Ignored, those writes fail and bpftrace finishes its stop.
    struct sigaction ignore = {.sa_handler = SIG_IGN};
    sigemptyset(&ignore.sa_mask);
    sigaction(SIGPIPE, &ignore, NULL);
  }
  while (closers < CLOSERS) {
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 64 * 1024);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    // Every signal blocked in the closers: bpftrace's handlers run in its own thread, as without this library.
    sigset_t all, before;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &before);
    pthread_t thread;
    int failed = pthread_create(&thread, &attr, closer, NULL);
    pthread_sigmask(SIG_SETMASK, &before, NULL);
    pthread_attr_destroy(&attr);
    if (failed) break;
    closers++;
  }
  int queued = closers > 0 && closing_count < MAX_PROBE_FDS;
  if (queued) {
    closing[closing_count++] = fd;
    pthread_cond_signal(&closing_changed);
  }
  pthread_mutex_unlock(&closing_lock);
  return queued;
}

/** At bpftrace's exit: every close handed to the closers is done, so that nothing of it outlives it. */
__attribute__((destructor)) static void finish_closes(void) {
  pthread_mutex_lock(&closing_lock);
  while (closing_count > 0 || closing_busy > 0) pthread_cond_wait(&closing_changed, &closing_lock);
  pthread_mutex_unlock(&closing_lock);
}

static struct ring *ring_of_fd(int fd) {
  for (int i = 0; i < ring_count; i++)
    if (rings[i].fd == fd) return &rings[i];
  return NULL;
}

static void forget_fd(int fd) {
  struct ring *ring = ring_of_fd(fd);
  if (ring) *ring = rings[--ring_count];
}

long syscall(long number, ...) {
  typedef long (*syscall_fn)(long, ...);
  static syscall_fn real;
  if (!real) real = (syscall_fn)dlsym(RTLD_NEXT, "syscall");
  va_list ap;
  va_start(ap, number);
  long a[6];
  for (int i = 0; i < 6; i++) a[i] = va_arg(ap, long);
  va_end(ap);
  int batched = 0;
  if (number == SYS_perf_event_open && ring_count < MAX_RINGS) {
    struct perf_event_attr *attr = (struct perf_event_attr *)a[0];
    if (attr && attr->type == PERF_TYPE_SOFTWARE && attr->config == PERF_COUNT_SW_BPF_OUTPUT &&
        !attr->watermark && attr->wakeup_events <= 1) {
      attr->watermark = 1;
      attr->wakeup_watermark = watermark_bytes;
      batched = 1;
    }
  }
  long fd = real(number, a[0], a[1], a[2], a[3], a[4], a[5]);
  if (number == SYS_perf_event_open && fd >= 0 && fd < MAX_PROBE_FDS) {
    const struct perf_event_attr *attr = (const struct perf_event_attr *)a[0];
    probe_fds[fd] = attr && !(attr->type == PERF_TYPE_SOFTWARE && attr->config == PERF_COUNT_SW_BPF_OUTPUT);
  }
  if (batched && fd >= 0) {
    forget_fd((int)fd); // a number reused after a close we did not see
    rings[ring_count++] = (struct ring){.fd = (int)fd, .epfd = -1, .page = NULL};
  }
  return fd;
}

void *mmap(void *addr, size_t length, int prot, int flags, int fd, off_t offset) {
  typedef void *(*mmap_fn)(void *, size_t, int, int, int, off_t);
  static mmap_fn real;
  if (!real) real = (mmap_fn)dlsym(RTLD_NEXT, "mmap");
  void *mapped = real(addr, length, prot, flags, fd, offset);
  struct ring *ring = mapped != MAP_FAILED && offset == 0 ? ring_of_fd(fd) : NULL;
  if (ring) ring->page = mapped;
  return mapped;
}

int munmap(void *addr, size_t length) {
  typedef int (*munmap_fn)(void *, size_t);
  static munmap_fn real;
  if (!real) real = (munmap_fn)dlsym(RTLD_NEXT, "munmap");
  for (int i = 0; i < ring_count; i++)
    if (rings[i].page == addr) rings[i].page = NULL;
  return real(addr, length);
}

int close(int fd) {
  forget_fd(fd);
  if (fd >= 0 && fd < MAX_PROBE_FDS && probe_fds[fd]) {
    probe_fds[fd] = 0;
    if (close_probe(fd)) return 0;
  }
  return real_close(fd);
}

int epoll_ctl(int epfd, int op, int fd, struct epoll_event *event) {
  typedef int (*epoll_ctl_fn)(int, int, int, struct epoll_event *);
  static epoll_ctl_fn real;
  if (!real) real = (epoll_ctl_fn)dlsym(RTLD_NEXT, "epoll_ctl");
  int result = real(epfd, op, fd, event);
  struct ring *ring = result == 0 ? ring_of_fd(fd) : NULL;
  if (ring && (op == EPOLL_CTL_ADD || op == EPOLL_CTL_MOD) && event) {
    ring->epfd = epfd;
    ring->data = event->data;
  } else if (ring && op == EPOLL_CTL_DEL) {
    ring->epfd = -1;
  }
  return result;
}

static int has_data(const struct ring *ring) {
  return __atomic_load_n(&ring->page->data_head, __ATOMIC_ACQUIRE) != ring->page->data_tail;
}

int epoll_wait(int epfd, struct epoll_event *events, int max, int timeout) {
  typedef int (*epoll_wait_fn)(int, struct epoll_event *, int, int);
  static epoll_wait_fn real;
  if (!real) real = (epoll_wait_fn)dlsym(RTLD_NEXT, "epoll_wait");
  int ours = 0;
  for (int i = 0; i < ring_count && !ours; i++) ours = rings[i].epfd == epfd && rings[i].page;
  if (!ours) return real(epfd, events, max, timeout);
  release_deferred(); // bpftrace has read the last batch
  if (signalled) {
    signalled = 0;
    errno = EINTR;
    return -1;
  }
  int ready = real(epfd, events, max, timeout < 0 || timeout > poll_ms ? poll_ms : timeout);
  if (ready < 0) {
    if (errno == EINTR) signalled = 0; // told as a blocked epoll_wait tells it
    return ready;
  }
  in_batch = 1; // from here an exit signal waits for the next epoll_wait
  if (signalled) {
    // What is ready stays in the buffers for bpftrace's last read (its drain after a stop).
    release_deferred();
    signalled = 0;
    errno = EINTR;
    return -1;
  }
  for (int i = 0; i < ring_count && ready < max; i++) {
    const struct ring *ring = &rings[i];
    if (ring->epfd != epfd || !ring->page || !has_data(ring)) continue;
    int listed = 0;
    for (int j = 0; j < ready && !listed; j++) listed = events[j].data.u64 == ring->data.u64;
    if (!listed) events[ready++] = (struct epoll_event){.events = EPOLLIN, .data = ring->data};
  }
  if (ready == 0) release_deferred(); // no batch to read: bpftrace may not call epoll_wait again
  return ready;
}

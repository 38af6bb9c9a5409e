/* cli/signals.c - owns what happens to a command's temporaries when the
 * process is interrupted: handlers for SIGINT, SIGTERM and SIGHUP (whichever
 * thread receives one - libraries start threads of their own before main)
 * wake one cleanup thread, which removes the registered outputs' temporaries
 * ("<out>.tmp.<pid>", a file or a folder) and then ends the process with the
 * same signal. Also removes, with a note, temporaries that dead processes
 * left beside an output. This registry is the binary's only process-wide
 * state (a signal is process-wide); the library keeps none. */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "base/util.h"
#include "cli/cli.h"

#define MAX_OUTPUTS 8

static struct {
  pthread_mutex_t mu;
  int n;
  char tmp[MAX_OUTPUTS][4096 + 32];
  sem_t wake;
  volatile sig_atomic_t sig;
} G = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void on_signal(int sig) {
  if (!G.sig) G.sig = sig;
  sem_post(&G.wake);   /* async-signal-safe */
}

static void *cleanup_main(void *arg) {
  (void)arg;
  while (sem_wait(&G.wake) != 0 && errno == EINTR) {}
  int sig = G.sig ? G.sig : SIGTERM;
  pthread_mutex_lock(&G.mu);
  int removed = 0;
  for (int i = 0; i < G.n; i++) {
    /* the command may still be writing into it: a few tries */
    for (int t = 0; t < 5 && access(G.tmp[i], F_OK) == 0; t++) moesz_path_remove_tree(G.tmp[i]);
    removed += access(G.tmp[i], F_OK) != 0;
  }
  fprintf(stderr, "\nmoesz: %s; %s\n", strsignal(sig), G.n ? "temporary output removed" : "stopped");
  (void)removed;
  pthread_mutex_unlock(&G.mu);
  signal(sig, SIG_DFL);
  sigset_t one;
  sigemptyset(&one);
  sigaddset(&one, sig);
  pthread_sigmask(SIG_UNBLOCK, &one, NULL);
  raise(sig);       /* dies of the signal, as without the handler */
  _exit(128 + sig);
}

int moesz_cli_signals_start(void) {
  if (sem_init(&G.wake, 0, 0) != 0) return -1;
  pthread_t th;
  pthread_attr_t at;
  pthread_attr_init(&at);
  pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
  int rc = pthread_create(&th, &at, cleanup_main, NULL);
  pthread_attr_destroy(&at);
  if (rc) return -1;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  static const int SIGS[] = {SIGINT, SIGTERM, SIGHUP};
  for (int i = 0; i < 3; i++)
    if (sigaction(SIGS[i], &sa, NULL) != 0) return -1;
  return 0;
}

/* Removes "<base>.tmp.<pid>" entries of dir whose process is gone. */
static void remove_stale(const char *dir, const char *base) {
  DIR *d = opendir(dir);
  if (!d) return;
  size_t bl = strlen(base);
  for (struct dirent *e; (e = readdir(d));) {
    if (strncmp(e->d_name, base, bl) || strncmp(e->d_name + bl, ".tmp.", 5)) continue;
    char *end;
    long pid = strtol(e->d_name + bl + 5, &end, 10);
    if (*end || pid <= 0 || pid == (long)getpid()) continue;
    if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue;   /* alive, or not ours to judge */
    char p[4096 + 256];
    snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
    if (moesz_path_remove_tree(p) == 0)
      fprintf(stderr, "moesz: removed %s, left by an interrupted run (process %ld is gone)\n", p, pid);
  }
  closedir(d);
}

void moesz_cli_output(const char *path) {
  char dir[4096], base[4096];
  size_t n = strlen(path);
  while (n > 1 && path[n - 1] == '/') n--;
  if (n == 0 || n >= sizeof dir) return;
  memcpy(dir, path, n);
  dir[n] = 0;
  char *slash = strrchr(dir, '/');
  if (slash) {
    snprintf(base, sizeof base, "%s", slash + 1);
    if (slash == dir) slash[1] = 0;
    else *slash = 0;
  } else {
    snprintf(base, sizeof base, "%s", dir);
    snprintf(dir, sizeof dir, ".");
  }
  if (*base) remove_stale(dir, base);
  pthread_mutex_lock(&G.mu);
  if (G.n < MAX_OUTPUTS) {
    char full[4096];
    memcpy(full, path, n);
    full[n] = 0;
    if (moesz_tmp_path(G.tmp[G.n], sizeof G.tmp[G.n], full, (long)getpid()) == 0) G.n++;
  }
  pthread_mutex_unlock(&G.mu);
}

/* su-exec USER[:GROUP] COMMAND [ARGS...]: switch user and group, then exec COMMAND (no TTY, no fork).
 * The testbed's stand-in for the krunner's su-exec.<distro>.bin (Debian 12 does not package su-exec).
 * Static, so it reads /etc/passwd and /etc/group itself instead of going through NSS. */
#define _GNU_SOURCE
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* numeric id of NAME in FILE (name:x:id:...), or of a numeric NAME; -1 if unknown */
static long lookup(const char *file, const char *name, long *gid_out) {
  char *end;
  long n = strtol(name, &end, 10);
  if (*name != '\0' && *end == '\0') return n;
  FILE *f = fopen(file, "r");
  if (f == NULL) return -1;
  char line[1024];
  long id = -1;
  while (fgets(line, sizeof line, f) != NULL) {
    char *save = NULL;
    char *user = strtok_r(line, ":", &save);
    if (user == NULL || strcmp(user, name) != 0) continue;
    strtok_r(NULL, ":", &save);
    char *uid = strtok_r(NULL, ":", &save);
    char *gid = strtok_r(NULL, ":", &save);
    if (uid != NULL) id = strtol(uid, NULL, 10);
    if (gid_out != NULL && gid != NULL) *gid_out = strtol(gid, NULL, 10);
    break;
  }
  fclose(f);
  return id;
}

int main(int argc, char **argv) {
  if (argc < 3) { fprintf(stderr, "usage: su-exec user[:group] command [args...]\n"); return 1; }
  char *spec = strdup(argv[1]);
  char *group = strchr(spec, ':');
  if (group != NULL) *group++ = '\0';
  long pw_gid = -1;
  long uid = lookup("/etc/passwd", spec, &pw_gid);
  if (uid < 0) { fprintf(stderr, "su-exec: unknown user %s\n", spec); return 1; }
  long gid = group != NULL && *group != '\0' ? lookup("/etc/group", group, NULL) : pw_gid;
  if (gid < 0) { fprintf(stderr, "su-exec: unknown group %s\n", group != NULL ? group : "(primary)"); return 1; }
  gid_t g = (gid_t)gid;
  if (setgroups(1, &g) != 0 || setgid(g) != 0 || setuid((uid_t)uid) != 0) { perror("su-exec: switching user"); return 1; }
  execvp(argv[2], argv + 2);
  fprintf(stderr, "su-exec: %s: ", argv[2]);
  perror("exec");
  return 127;
}

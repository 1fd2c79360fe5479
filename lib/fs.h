/*
 * lib/fs: file-system helpers of the state store, the audit log, the
 * config loader and the secrets it names. A leaf: libc only.
 */
#ifndef CUTOVER_LIB_FS_H
#define CUTOVER_LIB_FS_H

#include <stddef.h>

/* The directory part of <file> as a new string: "." when it has none, "/"
 * for a file at the root. */
char *fs_dir_of(const char *file);

/* "<dir>/<rel>" for a relative <rel>, a copy of <rel> when it is absolute:
 * a file name of a config resolved against the config's directory. A new
 * string. */
char *fs_resolve(const char *dir, const char *rel);

/* Creates the directory that holds <file> (and its parents) with mode 0700
 * when missing. Returns 0, or -1 with a message naming the directory in
 * <err>. */
int fs_mkdir_parent(const char *file, char *err, size_t errlen);

/* Reads all of <file>, a secret: it must be a regular file (links are
 * followed) that neither group nor others may access (mode & 077 == 0), of
 * at most <max> bytes. Returns 0 with the text in <*out> (NUL-terminated,
 * <*len> bytes without the NUL; the caller wipes and frees it), or -1 with a
 * message naming the file in <err> (errno kept: ENOENT for a missing one). */
int fs_read_private(const char *file, size_t max, char **out, size_t *len, char *err,
                    size_t errlen);

#endif

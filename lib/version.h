/*
 * version: the version of cutover, one place for both binaries (cutoverd
 * --version and cutover_build_info, cutoverctl --version). A leaf.
 */
#ifndef CUTOVER_LIB_VERSION_H
#define CUTOVER_LIB_VERSION_H

#ifndef CUTOVER_VERSION
#define CUTOVER_VERSION "0.1.0"
#endif

#endif

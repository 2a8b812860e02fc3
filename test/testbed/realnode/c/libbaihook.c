/* The testbed's libbaihook.<distro>.<arch>.so (LD_PRELOADed into every kernel process by the pod
 * spec). The production library overrides sysconf(_SC_NPROCESSORS_*) with the kernel's CPU share;
 * the testbed only needs a loadable library (a missing one makes ld.so print an error per process,
 * and a missing hostPath subPath becomes a directory). Deliberately empty. */
void baihook_testbed_marker(void) {}

/* LD_PRELOADed by `make test-sanitize`: dlclose does nothing, so that at exit LeakSanitizer can
 * still name the Open MPI components (mca_*.so) behind an allocation and lsan.supp applies to them
 * (an unloaded module shows as "<unknown module>", which no suppression can match). */
int dlclose(void *handle);

int dlclose(void *handle) {
    (void)handle;
    return 0;
}

/* How a rank waits for an MPI message without a core to spin on. Open MPI's shared-memory
 * transport has no wait that sleeps (MPI_Wait spins), and the waiting rank shares the cores with
 * the compute threads it waits for, so waits probe and sleep in turn. The pause between probes
 * is both the latency a wait may add and (as its inverse) its wake-ups: poll_pause_s makes it
 * short only near the time the message is due, in proportion to the distance from it, so that the
 * step report's round trip costs tens of microseconds instead of a millisecond while the waits
 * far from it still probe once a millisecond, as before (docs/training.md, "Where an end-to-end
 * epoch goes"). */
#pragma once

#define POLL_FINE_S 50e-6 /* the shortest pause: at the time the message is due */
#define POLL_MAX_S 1e-3   /* the longest: a wait never adds more latency than this */

/* The pause before the next probe of a wait that began elapsed_s ago for a message due at due_s
 * from its beginning (0: at once, or not known; negative: it was due before the wait began): 1/8
 * of the time left before it is due, 1/16 of its lateness once it is late, within [POLL_FINE_S,
 * POLL_MAX_S]. A message that comes earlier or later than due is seen after at most an eighth of
 * the error (and at most 1 ms, as by probing every millisecond). */
double poll_pause_s(double elapsed_s, double due_s);

/* The expected period of a series of messages from the last two gaps between them (<= 0: not
 * known yet): the shorter one, so that one slow step (a checkpoint, validation between epochs)
 * does not make the wait for the next one probe coarsely when it comes. 0 while either is not
 * known. */
double poll_expected_period_s(double last_gap_s, double gap_before_s);

/* Sleeps `seconds` (less when a signal arrives) with this thread's timer slack at 5 us (Linux's
 * default of 50 us would double the fine pause). */
void poll_sleep(double seconds);

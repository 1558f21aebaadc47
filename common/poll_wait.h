/* How a rank waits for an MPI message without a core to spin on. Open MPI's shared-memory
 * transport has no blocking wait that sleeps (MPI_Wait spins), and the waiting rank shares the
 * cores with the compute threads it waits for, so waits probe and sleep in turn. The pause between
 * probes decides both the latency a wait adds (up to one pause) and its CPU cost (one wake-up per
 * pause): poll_pause_s makes it short only where the message is due, so the step report's round
 * trip costs tens of microseconds instead of a millisecond, with no more wake-ups than fixed 1 ms
 * polling (docs/training.md, "Where an end-to-end epoch goes"). */
#pragma once

/* Bounds of a pause (seconds). */
#define POLL_FINE_S 50e-6 /* where the message is due */
#define POLL_MAX_S 1e-3   /* a late message: at most this much latency is added */
#define POLL_AHEAD_MAX_S 20e-3 /* a sleep towards a message due later (callers look at other \
                                  things between probes: stop requests, liveness) */

/* The pause before the next probe of a wait that began elapsed_s ago for a message expected
 * expected_s after its beginning (<= 0: at once, or unknown). Until the message is due, less a
 * lead of 1 ms + expected_s / 16 for the jitter of periodic work, one sleep towards the lead's start
 * (at most POLL_AHEAD_MAX_S); then POLL_FINE_S; once it is late, 1/16 of the lateness (at least
 * POLL_FINE_S, at most POLL_MAX_S): the added latency stays within about 6 % of the wait. */
double poll_pause_s(double elapsed_s, double expected_s);

/* The expected period of a series of messages from the last two gaps between them (<= 0: not
 * known yet): the shorter one, so that one slow step (a checkpoint, validation between epochs)
 * does not make the wait for the next sleep past it. Returns 0 while either is unknown. */
double poll_expected_period_s(double last_gap_s, double gap_before_s);

/* Sleeps `seconds` (less when a signal arrives) with this thread's timer slack at 5 us (Linux's
 * default of 50 us would double a fine pause). */
void poll_sleep(double seconds);

/* The coordinator's subcommands; each takes the arguments after its name and returns the exit
 * code (0 ok, 1 failure, 2 bad usage). */
#pragma once

int cmd_data(int argc, char **argv);  /* data pack|synth|info|verify */
int cmd_train(int argc, char **argv); /* train key=value ... */
int cmd_watch(int argc, char **argv); /* watch <rundir>: live progress of a run */
int cmd_ctl(int argc, char **argv);   /* ctl <rundir> status|save|stop */
int cmd_ckpt(int argc, char **argv);  /* ckpt ls|show|diff|verify|export|tag|untag|prune */
int cmd_runs(int argc, char **argv);  /* runs ls|compare */

/* The coordinator's subcommands; each takes the arguments after its name and returns the exit
 * code (0 ok, 1 failure, 2 bad usage). */
#pragma once

int cmd_data(int argc, char **argv);  /* data pack|synth|info|verify */
int cmd_train(int argc, char **argv); /* train key=value ... */

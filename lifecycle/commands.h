/* bin/lifecycle's commands (also reached as `coordinator val|predict|gate|drift`): each takes the
 * arguments after its name and returns the exit code (0 ok, 1 failure or a failed gate / drift
 * check, 2 bad usage). */
#pragma once

int cmd_val(int argc, char **argv);     /* val model=... data=...: metrics */
int cmd_predict(int argc, char **argv); /* predict model=... source=...: boxes */
int cmd_gate(int argc, char **argv);    /* gate candidate=... baseline=... data=...: CI check */
int cmd_drift(int argc, char **argv);   /* drift model=... reference=... new=...: monitoring */

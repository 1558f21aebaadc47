/* The worker's offline subcommands (the training role starts when no subcommand is given). */
#pragma once

int worker_cmd_info(int argc, char **argv); /* info model=... nc=... imgsz=... */

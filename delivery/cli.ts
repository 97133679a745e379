// CLI subcommands of this room, registered on the `lifecycle` program by bin/cli.ts.
import type { Command } from 'commander';

export function register(_program: Command): void {}

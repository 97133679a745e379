// `lifecycle demo` and `lifecycle run`: wired once the rooms exist.
import type { Command } from 'commander';

export function register(_program: Command): void {}

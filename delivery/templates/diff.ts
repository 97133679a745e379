// Two versions of a template compared file by file, as unified diffs (the `diff` package, the
// format of `git diff`): what a reviewer reads before publishing a version.
import { createTwoFilesPatch } from 'diff';
import type { TemplateVersion } from './versions.ts';

export interface FileDiff {
  file: string;
  change: 'added' | 'removed' | 'changed';
  /** Unified diff, three lines of context, headed `--- <name>@v<from>/<file>` / `+++ ...@v<to>/...`. */
  patch: string;
}

/** The files that differ between two versions, in file-name order; unchanged files are left out. */
export function diffVersions(from: TemplateVersion, to: TemplateVersion): FileDiff[] {
  const names = [...new Set([...Object.keys(from.files), ...Object.keys(to.files)])].sort();
  const out: FileDiff[] = [];
  for (const file of names) {
    const a = from.files[file];
    const b = to.files[file];
    if (a === b) continue;
    const change = a === undefined ? 'added' : b === undefined ? 'removed' : 'changed';
    const patch = createTwoFilesPatch(
      a === undefined ? '/dev/null' : `${from.name}@v${from.version}/${file}`,
      b === undefined ? '/dev/null' : `${to.name}@v${to.version}/${file}`,
      a ?? '',
      b ?? '',
      undefined,
      undefined,
      { context: 3 },
    );
    // The header's first line is a row of `=`: not part of a unified diff as git prints it.
    out.push({ file, change, patch: patch.replace(/^=+\n/, '') });
  }
  return out;
}

import { describe, expect, it } from 'vitest';
import { diffVersions } from './diff.ts';
import { contentHash, type TemplateVersion } from './versions.ts';

const version = (n: number, files: Record<string, string>): TemplateVersion => ({
  name: 'welcome',
  version: n,
  author: 'k',
  message: '',
  createdAt: '2026-01-01T00:00:00.000Z',
  hash: contentHash(files),
  files,
});

describe('diff of two versions', () => {
  it('gives a unified diff per changed, added and removed file, and leaves out unchanged ones', () => {
    const a = version(1, {
      'email.en.hbs': '---\nsubject: Hi\n---\n<p>One</p>\n<p>Same</p>\n',
      'sms.en.hbs': 'Gone soon\n',
      'sample.json': '{}',
    });
    const b = version(2, {
      'email.en.hbs': '---\nsubject: Hello\n---\n<p>One</p>\n<p>Same</p>\n',
      'push.en.hbs': '---\ntitle: New\n---\nBody\n',
      'sample.json': '{}',
    });
    const d = diffVersions(a, b);
    expect(d.map((f) => [f.file, f.change])).toEqual([
      ['email.en.hbs', 'changed'],
      ['push.en.hbs', 'added'],
      ['sms.en.hbs', 'removed'],
    ]);
    expect(d[0]!.patch).toBe(
      [
        '--- welcome@v1/email.en.hbs',
        '+++ welcome@v2/email.en.hbs',
        '@@ -1,5 +1,5 @@',
        ' ---',
        '-subject: Hi',
        '+subject: Hello',
        ' ---',
        ' <p>One</p>',
        ' <p>Same</p>',
        '',
      ].join('\n'),
    );
    expect(d[1]!.patch).toContain('--- /dev/null\n+++ welcome@v2/push.en.hbs');
    expect(d[2]!.patch).toContain('+++ /dev/null\n@@ -1,1 +0,0 @@\n-Gone soon');
  });
});

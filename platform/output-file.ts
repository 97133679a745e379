// Output files of CLI commands (`simulate --out`, `backtest --out`): opened before any work
// starts, so a path that cannot be written is reported at once, and closed with their
// buffered writes flushed.
import { createWriteStream, type WriteStream } from 'node:fs';

/** Opens `path` for writing; resolves to the stream, or to the error that prevented it. */
export async function openOutputFile(path: string): Promise<WriteStream | Error> {
  const file = createWriteStream(path);
  const opened = await new Promise<Error | null>((resolve) => {
    file.once('open', () => resolve(null));
    file.once('error', resolve);
  });
  return opened ?? file;
}

/** Ends the stream once everything written is flushed. */
export function closeOutputFile(file: WriteStream): Promise<void> {
  return new Promise<void>((resolve, reject) =>
    file.end((err?: Error | null) => (err ? reject(err) : resolve())),
  );
}

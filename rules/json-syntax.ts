// Where a JSON document breaks: JSON.parse's messages differ between Node versions and
// often lack a position, so a small scanner finds the first error's line and column.

export interface JsonSyntaxError {
  line: number;
  column: number;
  message: string;
}

/** Parses JSON; on failure returns the first error with its 1-based line and column. */
export function parseJson(
  text: string,
): { ok: true; value: unknown } | { ok: false; error: JsonSyntaxError } {
  try {
    return { ok: true, value: JSON.parse(text) as unknown };
  } catch {
    return { ok: false, error: locateJsonError(text) };
  }
}

class ScanError extends Error {
  constructor(
    readonly at: number,
    message: string,
  ) {
    super(message);
  }
}

export function locateJsonError(text: string): JsonSyntaxError {
  let offset = 0;
  const ws = () => {
    while (offset < text.length && ' \t\n\r'.includes(text[offset]!)) offset++;
  };
  const describe = (at: number) =>
    at >= text.length ? 'unexpected end of file' : `unexpected ${JSON.stringify(text[at])}`;
  const fail = (message?: string): never => {
    throw new ScanError(offset, message ?? describe(offset));
  };
  const literal = (word: string) => {
    for (const ch of word) {
      if (text[offset] !== ch) fail();
      offset++;
    }
  };
  const string = () => {
    offset++; // opening quote
    for (;;) {
      if (offset >= text.length) fail('unterminated string');
      const ch = text[offset]!;
      if (ch === '"') {
        offset++;
        return;
      }
      if (ch < ' ') fail('line break or control character inside a string');
      if (ch === '\\') {
        const next = text[offset + 1];
        if (next === 'u') {
          if (!/^[0-9a-fA-F]{4}$/.test(text.slice(offset + 2, offset + 6))) fail('bad \\u escape');
          offset += 6;
        } else if (next !== undefined && '"\\/bfnrt'.includes(next)) offset += 2;
        else fail('bad escape in string');
      } else offset++;
    }
  };
  const number = () => {
    const match = /^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/.exec(text.slice(offset));
    if (!match || match[0] === '-' || match[0] === '') fail();
    offset += match![0].length;
  };
  const value = (): void => {
    ws();
    const ch = text[offset];
    if (ch === '{') {
      offset++;
      ws();
      if (text[offset] === '}') {
        offset++;
        return;
      }
      for (;;) {
        ws();
        if (text[offset] !== '"')
          fail(
            text[offset] === '}'
              ? 'trailing comma before "}"'
              : `expected a "quoted" field name, found ${describe(offset).replace('unexpected ', '')}`,
          );
        string();
        ws();
        if (text[offset] !== ':') fail('expected ":" after field name');
        offset++;
        value();
        ws();
        if (text[offset] === ',') {
          offset++;
          continue;
        }
        if (text[offset] === '}') {
          offset++;
          return;
        }
        fail('expected "," or "}" after a value (missing comma?)');
      }
    } else if (ch === '[') {
      offset++;
      ws();
      if (text[offset] === ']') {
        offset++;
        return;
      }
      for (;;) {
        ws();
        if (text[offset] === ']') fail('trailing comma before "]"');
        value();
        ws();
        if (text[offset] === ',') {
          offset++;
          continue;
        }
        if (text[offset] === ']') {
          offset++;
          return;
        }
        fail('expected "," or "]" after a list item (missing comma?)');
      }
    } else if (ch === '"') string();
    else if (ch === 't') literal('true');
    else if (ch === 'f') literal('false');
    else if (ch === 'n') literal('null');
    else if (ch === '-' || (ch !== undefined && ch >= '0' && ch <= '9')) number();
    else fail(ch === "'" ? "strings need double quotes, not '" : undefined);
  };
  let at = 0;
  let message = 'invalid JSON';
  try {
    value();
    ws();
    if (offset < text.length) fail('unexpected text after the end of the document');
  } catch (err) {
    if (!(err instanceof ScanError)) throw err;
    at = err.at;
    message = err.message;
  }
  const before = text.slice(0, at);
  const line = before.split('\n').length;
  const column = at - (before.lastIndexOf('\n') + 1) + 1;
  return { line, column, message };
}

import { describe, expect, it } from 'vitest';
import { locateJsonError } from './json-syntax.ts';

describe('locateJsonError', () => {
  it.each([
    ['{\n  "a": 1\n  "b": 2\n}', 3, 3, 'expected "," or "}" after a value (missing comma?)'],
    ['{"a": 1,}', 1, 9, 'trailing comma before "}"'],
    ['[1, 2,]', 1, 7, 'trailing comma before "]"'],
    ['{"a": tru}', 1, 10, 'unexpected "}"'],
    ["{'a': 1}", 1, 2, 'expected a "quoted" field name, found "\'"'],
    ['{"a": "x\ny"}', 1, 9, 'line break or control character inside a string'],
    ['{"a": 1', 1, 8, 'expected "," or "}" after a value (missing comma?)'],
    ['', 1, 1, 'unexpected end of file'],
    ['{} {}', 1, 4, 'unexpected text after the end of the document'],
  ])('%j', (text, line, column, message) => {
    expect(() => JSON.parse(text)).toThrow();
    expect(locateJsonError(text)).toEqual({ line, column, message });
  });
});

/** A bad VimmonClientOptions value; the message starts with the option's name. */
export class OptionError extends Error {
  override name = 'OptionError';
  constructor(
    readonly option: string,
    problem: string,
  ) {
    super(`${option}: ${problem}`);
  }
}

/** @internal What a CLI command reads and writes; tests pass their own. */
export interface CliIo {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  env: Record<string, string | undefined>;
  cwd: string;
}

/** @internal A usage error: the message is printed with the command's help, exit code 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

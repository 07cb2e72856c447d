// A doctor check: what it looked at, how it stands, and the one-line fix when it is not ok.

export type CheckStatus = 'ok' | 'warn' | 'missing';

export interface Check {
  name: string;
  status: CheckStatus;
  detail: string;
  /** What to do, in one line: present on every warn and missing. */
  fix?: string;
}

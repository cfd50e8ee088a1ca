/**
 * Weir's errors: one base class with a stable `code` from a fixed table, and
 * subclasses by category. Validation errors carry every problem found, each
 * naming the object and the field, so that a user fixes them all at once.
 */

export const ErrorCode = {
  /** The user's input is wrong; the message says which object and field. */
  Invalid: 'INVALID',
  /** Something we depend on is unreachable; retrying may help. */
  Unavailable: 'UNAVAILABLE',
  /** The requested object does not exist. */
  NotFound: 'NOT_FOUND',
  /**
   * The object was closed (disposed) while the operation waited on it: its
   * owner is shutting down. Retrying on the same object never helps. (A use
   * after close that is not such a race is a bug: Internal.)
   */
  Closed: 'CLOSED',
  /** The caller is not who may do this (no certificate, or the wrong identity or role). */
  Denied: 'PERMISSION_DENIED',
  /**
   * A limit on what one peer (or all of them) may hold or send was reached
   * (shared/limits.ts): the message names the limit. Retrying after
   * releasing something, or later, may help; the same request again at once
   * does not.
   */
  Exhausted: 'RESOURCE_EXHAUSTED',
  /** A broken invariant inside Weir. Never thrown for user input. */
  Internal: 'INTERNAL',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

export class WeirError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** One problem with the user's input. */
export interface Issue {
  /** Where the object came from: a file path, "kubernetes", ... */
  readonly source?: string;
  /** The object, as "Kind namespace/name" (or "Kind name"), when known. */
  readonly object?: string;
  /** The field, as a path: "spec.ingress[0].from[1].ipBlock.cidr". */
  readonly field?: string;
  readonly message: string;
}

export function formatIssue(issue: Issue): string {
  return [issue.source, issue.object, issue.field, issue.message]
    .filter((p) => p !== undefined && p !== '')
    .join(': ');
}

export class ValidationError extends WeirError {
  readonly issues: readonly Issue[];
  constructor(issues: readonly Issue[]) {
    super(ErrorCode.Invalid, issues.map(formatIssue).join('\n'));
    this.issues = issues;
  }
}

export class NotFoundError extends WeirError {
  constructor(message: string) {
    super(ErrorCode.NotFound, message);
  }
}

export class UnavailableError extends WeirError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.Unavailable, message, options);
  }
}

/** The object was closed while the operation waited on it (see ErrorCode.Closed). */
export class ClosedError extends WeirError {
  constructor(message: string) {
    super(ErrorCode.Closed, message);
  }
}

/** The caller may not do this: no certificate, another identity, or too small a role. */
export class PermissionError extends WeirError {
  constructor(message: string) {
    super(ErrorCode.Denied, message);
  }
}

/** A limit of shared/limits.ts was reached (see ErrorCode.Exhausted). */
export class ResourceExhaustedError extends WeirError {
  constructor(message: string) {
    super(ErrorCode.Exhausted, message);
  }
}

/** A broken invariant: a bug in Weir, never the user's fault. */
export class InternalError extends WeirError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.Internal, message, options);
  }
}

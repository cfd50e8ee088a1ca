/**
 * `weirctl completion bash|zsh|fish`: shell completion generated from the
 * command tree commander holds, so it lists exactly the commands and flags
 * weirctl has (subcommands and flags per command path; flags given on the
 * root, such as --tls-dir, complete everywhere).
 */
import type { Command } from 'commander';
import { UsageError, type Io } from '../io.js';

interface Node {
  readonly path: string[];
  readonly commands: string[];
  readonly flags: string[];
}

function walk(c: Command, path: string[], out: Node[], inherited: string[]): void {
  const flags = [
    ...inherited,
    ...c.options.flatMap((o) => [o.long, o.short].filter((f): f is string => f !== undefined)),
  ];
  out.push({ path, commands: c.commands.map((s) => s.name()), flags: [...new Set(flags)] });
  for (const s of c.commands)
    walk(s, [...path, s.name()], out, path.length === 0 ? flags : inherited);
}

const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

function bash(nodes: Node[]): string {
  const cases = nodes
    .map((n) => `    ${q(n.path.join(' '))}) echo ${q([...n.commands, ...n.flags].join(' '))} ;;`)
    .join('\n');
  return `# weirctl bash completion: source <(weirctl completion bash)
_weirctl_words() {
  case "$1" in
${cases}
    *) return 1 ;;
  esac
}
_weirctl() {
  local cur w i path_ words_
  cur="\${COMP_WORDS[COMP_CWORD]}"
  path_=""
  for ((i = 1; i < COMP_CWORD; i++)); do
    w="\${COMP_WORDS[i]}"
    case "$w" in -*) continue ;; esac
    if [ -z "$path_" ]; then path_="$w"; else path_="$path_ $w"; fi
  done
  # Words that are arguments or flag values are not commands: drop them from the end.
  while ! words_="$(_weirctl_words "$path_")"; do
    case "$path_" in *" "*) path_="\${path_% *}" ;; *) path_="" ;; esac
  done
  COMPREPLY=($(compgen -W "$words_" -- "$cur"))
}
complete -F _weirctl weirctl
`;
}

function zsh(nodes: Node[]): string {
  return `#compdef weirctl
# weirctl zsh completion: source <(weirctl completion zsh)
autoload -U +X bashcompinit && bashcompinit
${bash(nodes).split('\n').slice(1).join('\n')}`;
}

function fish(nodes: Node[]): string {
  const lines = [
    '# weirctl fish completion: weirctl completion fish | source',
    'complete -c weirctl -f',
  ];
  for (const n of nodes) {
    const cond =
      n.path.length === 0
        ? '__fish_use_subcommand'
        : `__fish_seen_subcommand_from ${n.path[n.path.length - 1]}`;
    for (const c of n.commands) lines.push(`complete -c weirctl -n ${q(cond)} -a ${q(c)}`);
    for (const f of n.flags)
      lines.push(
        f.startsWith('--')
          ? `complete -c weirctl -n ${q(cond)} -l ${q(f.slice(2))}`
          : `complete -c weirctl -n ${q(cond)} -s ${q(f.slice(1))}`,
      );
  }
  return `${lines.join('\n')}\n`;
}

export function completion(io: Io, program: Command, shell: string): number {
  const nodes: Node[] = [];
  walk(program, [], nodes, []);
  const make = { bash, zsh, fish }[shell as 'bash' | 'zsh' | 'fish'];
  if (make === undefined)
    throw new UsageError(
      `completion: the shell must be bash, zsh or fish, not ${JSON.stringify(shell)}`,
    );
  io.stdout(make(nodes));
  return 0;
}

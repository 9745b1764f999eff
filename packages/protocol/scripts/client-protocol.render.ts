import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import ts from 'typescript';

/** The SDK's copy of the protocol, relative to the repository root. */
export const CLIENT_PROTOCOL_FILE = 'packages/client/src/protocol.generated.ts';

const SOURCE_DIR = 'packages/protocol/src';
/** What the SDK takes from protocol.ts; frames.ts (types only) it takes whole. */
const FROM_PROTOCOL = ['ERROR_CODES', 'ErrorCode', 'CLOSE'];

const HEADER = `// Generated from packages/protocol/src by \`npm run protocol:generate\`: do not edit.
// The SDK has no runtime dependencies, so it carries this copy; a unit test fails when it is stale.
`;

/**
 * The SDK's copy: the named declarations of protocol.ts, then every declaration of frames.ts, each
 * with the comment attached to it (a comment separated by a blank line, like a file header, is
 * left out). The sources are prettier-formatted and keep their layout, so the copy is too.
 */
export function renderClientProtocol(root: string): string {
  const protocol = statementsOf(join(root, SOURCE_DIR, 'protocol.ts'));
  const picked = protocol.filter((s) => namesOf(s.node).some((n) => FROM_PROTOCOL.includes(n)));
  const missing = FROM_PROTOCOL.filter((n) => !picked.some((s) => namesOf(s.node).includes(n)));
  if (missing.length > 0) throw new Error(`protocol.ts declares no ${missing.join(', ')}`);
  const frames = statementsOf(join(root, SOURCE_DIR, 'frames.ts')).filter(
    (s) => !ts.isImportDeclaration(s.node),
  );
  return `${HEADER}\n${[...picked, ...frames].map((s) => s.text).join('\n\n')}\n`;
}

interface Statement {
  node: ts.Statement;
  /** The statement with the comment directly above it. */
  text: string;
}

function statementsOf(file: string): Statement[] {
  const source = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, true);
  return source.statements.map((node) => {
    const trivia = source.text.slice(node.getFullStart(), node.getStart(source));
    const attached = trivia.replace(/^[\s\S]*\n[ \t]*\n/, '').trimStart();
    return { node, text: attached + node.getText(source) };
  });
}

function namesOf(node: ts.Statement): string[] {
  if (ts.isVariableStatement(node)) return node.declarationList.declarations.map((d) => d.name.getText());
  if (ts.isTypeAliasDeclaration(node) || ts.isInterfaceDeclaration(node) || ts.isFunctionDeclaration(node)) {
    return node.name ? [node.name.text] : [];
  }
  return [];
}

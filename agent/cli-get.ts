// Placeholder until this subcommand lands: it says so instead of pretending to work.
export async function main(_argv: string[]): Promise<number> {
  process.stderr.write('damselfly: this command is not available in this build yet\n');
  return 2;
}

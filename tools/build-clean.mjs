// `npm run build` starts from an empty dist/: tsup names chunks by content hash, so chunks of earlier
// builds would otherwise stay behind and be packed (package.json `files` ships dist/).
import { rmSync } from 'node:fs';

rmSync('dist', { recursive: true, force: true });

import { defineConfig } from 'vite';
import preact from '@preact/preset-vite';

// The API server the dev server forwards to (`npm run dev`); `make run` serves on :8080.
const apiTarget = process.env.VOTE_API_URL ?? 'http://127.0.0.1:8080';

export default defineConfig({
  plugins: [preact()],
  build: {
    target: 'es2022',
    // The server's Content-Security-Policy has no 'unsafe-inline': the preload polyfill would be
    // an inline script, and every browser we target supports <link rel=modulepreload>.
    modulePreload: { polyfill: false },
    // Keep every asset a file: a data: URL in CSS or JS is not worth a CSP exception.
    assetsInlineLimit: 0,
    cssCodeSplit: false,
    sourcemap: false,
    reportCompressedSize: false,
  },
  server: {
    proxy: {
      '/api': { target: apiTarget, changeOrigin: false, ws: true },
      '/healthz': apiTarget,
      '/readyz': apiTarget,
    },
  },
  preview: {
    proxy: {
      '/api': { target: apiTarget, changeOrigin: false, ws: true },
    },
  },
});

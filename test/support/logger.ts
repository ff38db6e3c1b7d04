import { createLogger, parseLogLevel } from '../../common/logger.js';

/** Silent unless VIMMON_TEST_LOG names a level (e.g. VIMMON_TEST_LOG=debug). */
export const testLogger = () =>
  createLogger({ level: process.env.VIMMON_TEST_LOG ? parseLogLevel(process.env.VIMMON_TEST_LOG) : 'silent' });

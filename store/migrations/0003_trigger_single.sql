-- The cleanup of one instance is the trigger "single" (it was "api", which
-- bulk requests are too). Only this service's own table is touched.
UPDATE cleanup_jobs SET trigger = 'single' WHERE trigger = 'api';

-- A hostile branch's seed (tests/test_sandbox.py): from its DB slot it reaches for the portal's
-- own database beside the pool directory and makes everyone a superuser. The portal refuses it.
ATTACH DATABASE '../../portal.sqlite3' AS portal;
UPDATE portal.auth_user SET is_superuser = 1, first_name = 'owned by a branch';

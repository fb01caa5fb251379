"""PyMySQL as the MySQLdb driver of Django's MySQL backend."""

import sys

import pymysql


def install() -> None:
    """Make `import MySQLdb...` give PyMySQL's already loaded modules.

    pymysql.install_as_MySQLdb() aliases only the package: Django's `import MySQLdb.err` (and
    .constants, .converters) would then load second copies of those submodules and rebind
    `pymysql.err` to the copy, so `except pymysql.err.OperationalError` (the MySQL pool backend,
    the tests) no longer catches what PyMySQL raises.
    """
    pymysql.install_as_MySQLdb()
    for name, module in list(sys.modules.items()):
        if name.startswith("pymysql."):
            sys.modules["MySQLdb" + name.removeprefix("pymysql")] = module

"""SQLDatabaseNode on SQLite files and on the machine's PostgreSQL (127.0.0.1:5432, db ``test``)."""

from __future__ import annotations

import uuid

import pytest

from kailash.errors import NodeConfigurationError, NodeExecutionError, SecurityError
from kailash.nodes.data.sql import SQLDatabaseNode, _pools, translate_placeholders
from kailash.security.config import SecurityConfig, set_security_config
from kailash.security.secrets import Secret

PG = "postgresql://postgres@127.0.0.1:5432/test"


def sql(conn: str, query: str, **kw) -> dict:
    return SQLDatabaseNode(connection_string=conn, query=query, **kw).execute()


@pytest.fixture
def sqlite_db(tmp_path):
    conn = f"sqlite:///{tmp_path / 'app.db'}"
    sql(conn, "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL, tier TEXT)")
    return conn


@pytest.fixture(scope="module")
def pg_available():
    psycopg = pytest.importorskip("psycopg")
    try:
        psycopg.connect(PG, connect_timeout=3).close()
    except psycopg.Error as exc:
        pytest.skip(f"PostgreSQL at 127.0.0.1:5432 is not available: {exc}")


@pytest.fixture
def pg_table(pg_available):
    name = f"kx_{uuid.uuid4().hex[:10]}"
    sql(PG, f"CREATE TABLE {name} (id INTEGER PRIMARY KEY, name TEXT NOT NULL, score NUMERIC)")
    yield name
    sql(PG, f"DROP TABLE IF EXISTS {name}")


# -- placeholders ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("query", "target", "expected"),
    [
        ("SELECT * FROM t WHERE a = ? AND b = :b", "postgres", "SELECT * FROM t WHERE a = %s AND b = %(b)s"),
        ("SELECT '?', ':x', 10 % 3 FROM t WHERE a = ?", "postgres", "SELECT '?', ':x', 10 %% 3 FROM t WHERE a = %s"),
        ("SELECT x::int FROM t WHERE name LIKE 'a%' AND id = ?", "postgres",
         "SELECT x::int FROM t WHERE name LIKE 'a%%' AND id = %s"),
        ("SELECT * FROM t WHERE a = %s", "postgres", "SELECT * FROM t WHERE a = %s"),  # already psycopg style
        ("SELECT * FROM t WHERE a = %s AND b = %(b)s -- ?", "sqlite", "SELECT * FROM t WHERE a = ? AND b = :b -- ?"),
        ("SELECT * FROM t WHERE a = ?", "sqlite", "SELECT * FROM t WHERE a = ?"),
    ],
)
def test_placeholder_translation(query, target, expected):
    assert translate_placeholders(query, target) == expected


# -- SQLite ----------------------------------------------------------------------------------
def test_sqlite_insert_many_and_select_rows_as_dicts(sqlite_db):
    out = sql(sqlite_db, "INSERT INTO users (id, name, tier) VALUES (?, ?, ?)",
              parameters=[[1, "ann", "gold"], [2, "bob", "silver"], [3, "cy", "gold"]], execute_many=True)
    assert out["row_count"] == 3 and out["data"] == []
    out = sql(sqlite_db, "SELECT id, name FROM users WHERE tier = :tier ORDER BY id", parameters={"tier": "gold"})
    assert out["data"] == [{"id": 1, "name": "ann"}, {"id": 3, "name": "cy"}]
    assert out["row_count"] == 2 and out["columns"] == ["id", "name"]


def test_sqlite_fetch_one_and_none(sqlite_db):
    sql(sqlite_db, "INSERT INTO users VALUES (1, 'ann', 'gold')")
    assert sql(sqlite_db, "SELECT name FROM users WHERE id = ?", parameters=[1], fetch="one")["data"] == {"name": "ann"}
    assert sql(sqlite_db, "SELECT name FROM users WHERE id = ?", parameters=[9], fetch="one")["data"] is None
    out = sql(sqlite_db, "UPDATE users SET tier = %s WHERE id = %s", parameters=["bronze", 1])  # psycopg style works
    assert out["row_count"] == 1
    assert sql(sqlite_db, "SELECT tier FROM users", fetch="one")["data"] == {"tier": "bronze"}


def test_parameters_are_data_not_sql(sqlite_db):
    hostile = "x'); DROP TABLE users; --"
    sql(sqlite_db, "INSERT INTO users (id, name) VALUES (?, ?)", parameters=[1, hostile])
    assert sql(sqlite_db, "SELECT name FROM users")["data"] == [{"name": hostile}]


def test_sqlite_syntax_error_names_node_and_query(sqlite_db):
    node = SQLDatabaseNode(name="q", connection_string=sqlite_db, query="SELEC * FROM users")
    with pytest.raises(NodeExecutionError, match=r"node 'q' \(SQLDatabaseNode\): SQLite error \(OperationalError: "
                                                 r"near \"SELEC\": syntax error\) in query 'SELEC \* FROM users'"):
        node.execute()


def test_a_failing_run_is_rolled_back(sqlite_db):
    with pytest.raises(NodeExecutionError, match=r"UNIQUE constraint failed|IntegrityError"):
        sql(sqlite_db, "INSERT INTO users (id, name) VALUES (?, ?)",
            parameters=[[1, "a"], [2, "b"], [1, "dup"]], execute_many=True)
    assert sql(sqlite_db, "SELECT COUNT(*) AS n FROM users", fetch="one")["data"] == {"n": 0}


def test_connections_are_pooled_per_database(sqlite_db):
    path = sqlite_db[len("sqlite:///"):]
    sql(sqlite_db, "SELECT 1")
    pool = _pools[("sqlite", path)]
    SQLDatabaseNode(connection_string=sqlite_db, query="SELECT 2").execute()  # another node, same database
    assert _pools[("sqlite", path)] is pool and pool._created == 1


def test_sqlite_path_obeys_the_security_policy(tmp_path):
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    set_security_config(SecurityConfig(allowed_directories=[str(allowed)]))
    sql(f"sqlite:///{allowed / 'ok.db'}", "SELECT 1")
    with pytest.raises(SecurityError):
        sql(f"sqlite:///{tmp_path / 'outside.db'}", "SELECT 1")


def test_bad_arguments_are_configuration_errors(sqlite_db):
    with pytest.raises(NodeConfigurationError, match=r"'connection_string' must start with sqlite:/// or postgresql://"):
        sql("mysql://u@h/db", "SELECT 1")
    with pytest.raises(NodeConfigurationError, match=r"'fetch' must be 'all', 'one' or 'none'"):
        sql(sqlite_db, "SELECT 1", fetch="many")
    with pytest.raises(NodeConfigurationError, match=r"with execute_many=True, 'parameters' must be a list"):
        sql(sqlite_db, "INSERT INTO users (id) VALUES (?)", parameters={"id": 1}, execute_many=True)


# -- PostgreSQL ------------------------------------------------------------------------------
def test_postgres_round_trip_with_portable_placeholders(pg_table):
    out = sql(PG, f"INSERT INTO {pg_table} (id, name, score) VALUES (?, ?, ?)",
              parameters=[[1, "ann", 9.5], [2, "bob%", 7], [3, "cy", None]], execute_many=True)
    assert out["row_count"] == 3
    out = sql(PG, f"SELECT id, name FROM {pg_table} WHERE name LIKE 'b%' OR id = :id ORDER BY id",
              parameters={"id": 1})
    assert out["data"] == [{"id": 1, "name": "ann"}, {"id": 2, "name": "bob%"}]
    assert out["columns"] == ["id", "name"]
    one = sql(PG, f"SELECT count(*) AS n FROM {pg_table} WHERE score IS NOT NULL", fetch="one")
    assert one["data"] == {"n": 2}


def test_postgres_native_placeholders_and_update_count(pg_table):
    sql(PG, f"INSERT INTO {pg_table} (id, name) VALUES (%s, %s)", parameters=[1, "ann"])
    out = sql(PG, f"UPDATE {pg_table} SET name = %(n)s WHERE id = %(id)s", parameters={"n": "anna", "id": 1})
    assert out["row_count"] == 1
    assert sql(PG, f"SELECT name FROM {pg_table}", fetch="one")["data"] == {"name": "anna"}


def test_postgres_syntax_error(pg_available):
    node = SQLDatabaseNode(name="q", connection_string=PG, query="SELEC 1")
    with pytest.raises(NodeExecutionError, match=r"node 'q' \(SQLDatabaseNode\): PostgreSQL error 42601 "
                                                 r"\(SyntaxError: syntax error at or near \"SELEC\"\)"):
        node.execute()


def test_postgres_failed_statement_rolls_back(pg_table):
    with pytest.raises(NodeExecutionError, match=r"duplicate key|UniqueViolation"):
        sql(PG, f"INSERT INTO {pg_table} (id, name) VALUES (?, ?)", parameters=[[1, "a"], [1, "b"]],
            execute_many=True)
    assert sql(PG, f"SELECT count(*) AS n FROM {pg_table}", fetch="one")["data"] == {"n": 0}


def test_postgres_unknown_database_and_password_stays_secret(pg_available):
    conn = "postgresql://postgres:pw-hunter2-xyz@127.0.0.1:5432/no_such_db_kx"
    node = SQLDatabaseNode(name="q", connection_string=conn, query="SELECT 1")
    assert isinstance(node.config["connection_string"], Secret)
    assert "pw-hunter2-xyz" not in repr(node.to_dict())
    with pytest.raises(NodeExecutionError, match=r"node 'q' \(SQLDatabaseNode\): cannot connect to PostgreSQL at "
                                                 r"postgresql://postgres@127\.0\.0\.1:5432/no_such_db_kx") as info:
        node.execute()
    assert "pw-hunter2-xyz" not in str(info.value)


def test_postgres_pool_is_shared_between_nodes(pg_available):
    sql(PG, "SELECT 1")
    pool = _pools[("postgres", PG)]
    sql(PG, "SELECT 2")
    assert _pools[("postgres", PG)] is pool


def test_postgres_runs_exactly_one_statement_like_sqlite(pg_table):
    sql(PG, f"INSERT INTO {pg_table} (id, name) VALUES (1, 'kept')")
    for query in (f"SELECT 1; DROP TABLE {pg_table}", f"SELECT 1; DELETE FROM {pg_table}"):
        node = SQLDatabaseNode(name="q", connection_string=PG, query=query)
        with pytest.raises(NodeExecutionError, match="cannot insert multiple commands"):
            node.execute()
    assert sql(PG, f"SELECT name FROM {pg_table}")["data"] == [{"name": "kept"}]
    assert sql(PG, "SELECT 1 AS one;")["data"] == [{"one": 1}]  # one statement with its semicolon is fine


def test_sqlite_runs_exactly_one_statement(sqlite_db):
    with pytest.raises(NodeExecutionError, match="one statement at a time"):
        sql(sqlite_db, "SELECT 1; SELECT 2")

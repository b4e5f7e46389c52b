"""SQLAlchemy 2 (ORM, PyMySQL driver) against Strata: declarative models,
create_all, a Session's inserts, queries, an ALTER TABLE migration and
reflection.

Usage: sqlalchemy_check.py PORT [PASSWORD]. Prints "ok" and exits 0, or fails
with an assertion naming what differed.

Joins, multi-table UPDATE/DELETE (as SQLAlchemy's MySQL dialect writes them:
`UPDATE a, b SET …`, `DELETE FROM a USING a, b …`) and a CTE are required
(STRATA_REQUIRE_JOINS, which used to make the joined query required, is no
longer needed).
"""
import sys

from sqlalchemy import (
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    create_engine,
    delete,
    func,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    Session,
    foreign,
    mapped_column,
    relationship,
)

PORT = int(sys.argv[1])
PASSWORD = sys.argv[2] if len(sys.argv) > 2 else ""
URL = f"mysql+pymysql://root:{PASSWORD}@127.0.0.1:{PORT}"


class Base(DeclarativeBase):
    pass


class Author(Base):
    __tablename__ = "authors"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50), unique=True)
    # Strata has no FOREIGN KEY constraints: the join condition is named
    # here instead of in the DDL.
    books: Mapped[list["Book"]] = relationship(
        back_populates="author",
        primaryjoin="Author.id == foreign(Book.author_id)",
    )


class Book(Base):
    __tablename__ = "books"
    __table_args__ = (
        UniqueConstraint("author_id", "title", name="uq_author_title"),
        Index("ix_books_pages", "pages"),
    )
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    title: Mapped[str] = mapped_column(String(100))
    pages: Mapped[int] = mapped_column(Integer, default=0)
    author_id: Mapped[int] = mapped_column(Integer, index=True)
    author: Mapped[Author] = relationship(
        back_populates="books",
        primaryjoin="foreign(Book.author_id) == Author.id",
    )


setup = create_engine(URL, isolation_level="AUTOCOMMIT")
with setup.connect() as c:
    c.execute(text("DROP DATABASE IF EXISTS sa"))
    c.execute(text("CREATE DATABASE sa"))
setup.dispose()

engine = create_engine(f"{URL}/sa")
Base.metadata.create_all(engine)
# A second create_all finds the tables (DESCRIBE) and creates nothing.
Base.metadata.create_all(engine)

with Session(engine) as s:
    ann = Author(name="Ann")
    bob = Author(name="Bob")
    s.add_all([ann, bob])
    s.flush()
    s.add_all(
        [
            Book(title="First", pages=100, author_id=ann.id),
            Book(title="Second", pages=250, author_id=ann.id),
            Book(title="Third", pages=50, author_id=bob.id),
        ]
    )
    s.commit()

with Session(engine) as s:
    ids = s.scalars(select(Book.id).order_by(Book.id)).all()
    assert ids == [1, 2, 3], ids
    long = s.scalars(select(Book.title).where(Book.pages > 90).order_by(Book.title)).all()
    assert long == ["First", "Second"], long
    n = s.scalar(select(func.count()).select_from(Book).where(Book.author_id == 1))
    assert n == 2, n
    ann = s.scalars(select(Author).where(Author.name == "Ann")).one()
    # The relationship, loaded lazily by its own SELECT.
    assert sorted(b.title for b in ann.books) == ["First", "Second"]
    ann.name = "Anne"
    s.commit()

with Session(engine) as s:
    s.add(Book(title="First", pages=1, author_id=1))
    try:
        s.commit()
        raise AssertionError("a duplicate (author_id, title) was accepted")
    except IntegrityError as e:
        assert e.orig.args[0] == 1062, e.orig.args
        s.rollback()

# JOINS (helper B): an explicit join through the relationship.
with Session(engine) as s:
    q = (
        select(Author.name, Book.title)
        .join(Author.books)
        .where(Book.pages >= 100)
        .order_by(Book.title)
    )
    rows = [tuple(r) for r in s.execute(q)]
    assert rows == [("Anne", "First"), ("Anne", "Second")], rows

# Multi-table UPDATE and DELETE, and a CTE, as the ORM writes them.
with Session(engine) as s:
    bump = (
        update(Book)
        .where(Book.author_id == Author.id)
        .where(Author.name == "Bob")
        .values(pages=Book.pages + 1)
    )
    assert s.execute(bump).rowcount == 1
    s.commit()
    assert s.scalar(select(Book.pages).where(Book.title == "Third")) == 51
    per_author = (
        select(Book.author_id, func.sum(Book.pages).label("total"))
        .group_by(Book.author_id)
        .cte("per_author")
    )
    totals = s.execute(
        select(Author.name, per_author.c.total)
        .join(per_author, per_author.c.author_id == Author.id)
        .order_by(Author.name)
    ).all()
    assert [tuple(r) for r in totals] == [("Anne", 350), ("Bob", 51)], totals
    s.add(Author(name="Nobody"))
    s.add(Book(title="Orphan", pages=5, author_id=99))
    s.commit()
    # No session synchronization: MariaDB would want RETURNING for it.
    bulk = {"synchronize_session": False}
    gone = (
        delete(Book)
        .where(Book.author_id == Author.id)
        .where(Author.name == "Nobody")
    )
    assert s.execute(gone, execution_options=bulk).rowcount == 0
    orphans = delete(Book).where(Book.pages < 10).where(Book.author_id == Author.id)
    assert s.execute(orphans, execution_options=bulk).rowcount == 0
    sold = delete(Book).where(Book.author_id == Author.id).where(Author.name == "Bob")
    assert s.execute(sold, execution_options=bulk).rowcount == 1
    s.rollback()
    s.execute(delete(Book).where(Book.title == "Orphan"))
    s.execute(delete(Author).where(Author.name == "Nobody"))
    s.commit()
    assert s.scalar(select(func.count()).select_from(Book)) == 3

# A migration as Alembic would emit it, then reflection.
with engine.begin() as c:
    c.execute(text("ALTER TABLE books ADD COLUMN isbn VARCHAR(20) NULL"))
    c.execute(text("CREATE INDEX ix_books_isbn ON books (isbn)"))

insp = inspect(engine)
assert sorted(insp.get_table_names()) == ["authors", "books"], insp.get_table_names()
cols = {c["name"]: c for c in insp.get_columns("books")}
assert list(cols) == ["id", "title", "pages", "author_id", "isbn"], list(cols)
assert str(cols["title"]["type"]) == "VARCHAR(100)", cols["title"]["type"]
assert cols["isbn"]["nullable"] is True
assert cols["title"]["nullable"] is False
assert cols["id"]["autoincrement"] is True
pk = insp.get_pk_constraint("books")
assert pk["constrained_columns"] == ["id"], pk
uniques = {u["name"]: u["column_names"] for u in insp.get_unique_constraints("books")}
assert uniques == {"uq_author_title": ["author_id", "title"]}, uniques
indexes = {i["name"]: i["column_names"] for i in insp.get_indexes("books")}
for name, columns in [
    ("ix_books_pages", ["pages"]),
    ("ix_books_author_id", ["author_id"]),
    ("ix_books_isbn", ["isbn"]),
]:
    assert indexes.get(name) == columns, indexes

with Session(engine) as s:
    s.execute(text("UPDATE books SET isbn = '978-0' WHERE id = 1"))
    s.commit()
    assert s.scalar(text("SELECT isbn FROM books WHERE id = 1")) == "978-0"
    assert s.scalar(text("SELECT COUNT(*) FROM books WHERE isbn IS NULL")) == 2

Base.metadata.drop_all(engine)
assert inspect(engine).get_table_names() == []
engine.dispose()
print("ok")

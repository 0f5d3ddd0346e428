"""Loaders: every shared format, and malformed fixtures (encoding, missing column, bad rows, empty file)."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import polars as pl
import pytest
from shoprank.data import validate as V
from shoprank.data.loaders import FORMATS, LoadResult, load, stable_query_id
from shoprank.data.schemas import SCHEMAS, SEASONS
from shoprank.errors import DataError
from shoprank.hashing import hash_id

from tests.conftest import shared_file

_CACHE: dict[tuple[str, str, str | None], LoadResult] = {}


def _load_shared(shared_data: Path, rel: str, fmt: str, salt: str | None = None) -> LoadResult:
    """Each shared file is loaded once per test session (the files are large-ish)."""
    key = (rel, fmt, salt)
    if key not in _CACHE:
        _CACHE[key] = load(shared_file(shared_data, rel), fmt, salt=salt)
    return _CACHE[key]


def _check_frames(result: LoadResult) -> None:
    for kind, df in result.frames.items():
        V.check_schema(df, kind)
    assert list(result.quarantine.columns) == list(V.QUARANTINE_SCHEMA)
    kept = sum(df.height for df in result.frames.values())
    assert kept > 0


# ----------------------------------------------------------------------------- shared data

SHARED_CASES = [
    # fmt, path, {kind: (min rows, max rows)}
    (
        "homedepot",
        "homedepot/relevance.csv",
        {"judgements": (50_000, 70_000), "queries": (8_000, 11_000), "catalogue": (30_000, 60_000)},
    ),
    ("bestbuy-clicks", "bestbuy/clicks.csv", {"events": (30_000, 40_000), "queries": (1_000, 10_000)}),
    ("bestbuy-products", "bestbuy/products.xml.zip", {"catalogue": (437, 437)}),
    ("wands", "wands/query.csv", {"queries": (480, 480)}),
    ("fashion", "fashion/styles.csv", {"catalogue": (35_000, 36_000)}),
    ("online-retail", "online_retail/transactions.csv", {"transactions": (19_000, 20_000)}),
    ("instacart", "instacart", {"catalogue": (49_000, 49_688)}),
]


@pytest.mark.shared_data
@pytest.mark.parametrize(("fmt", "rel", "expected"), SHARED_CASES, ids=[c[0] for c in SHARED_CASES])
def test_shared_format_loads(shared_data: Path, fmt: str, rel: str, expected: dict) -> None:
    result = _load_shared(shared_data, rel, fmt)
    _check_frames(result)
    assert set(result.frames) == set(expected)
    for kind, (lo, hi) in expected.items():
        assert lo <= result.frames[kind].height <= hi, (kind, result.frames[kind].height)
    assert result.rows_read >= max(df.height for df in result.frames.values())


@pytest.mark.shared_data
def test_shared_details(shared_data: Path) -> None:
    hd = _load_shared(shared_data, "homedepot/relevance.csv", "homedepot")
    assert any("latin-1" in n for n in hd.notes)
    assert hd["judgements"]["label"].min() >= 1.0 and hd["judgements"]["label"].max() <= 3.0
    assert hd["judgements"]["query_id"].n_unique() == hd["queries"].height

    products = _load_shared(shared_data, "bestbuy/products.xml.zip", "bestbuy-products")
    assert products.quarantined_by_reason() == {"duplicate id": 437}
    assert products["catalogue"]["category_path"].str.contains(" > ").all()

    clicks = _load_shared(shared_data, "bestbuy/clicks.csv", "bestbuy-clicks", salt="s1")
    raw_user = "16ef81071616c2be9d6fce3c13db0f759ccb2327"
    assert clicks["events"]["user_hash"][0] == hash_id(raw_user, "s1")
    assert clicks["events"]["timestamp"].null_count() == 0
    assert clicks["queries"]["intent"].null_count() < clicks["queries"].height

    fashion = _load_shared(shared_data, "fashion/styles.csv", "fashion")
    seasons = set(fashion["catalogue"]["season"].drop_nulls().unique().to_list())
    assert seasons == {"spring", "summer", "fall", "winter"}
    attrs = json.loads(fashion["catalogue"]["attributes"][0])
    assert {"gender", "baseColour", "usage", "year"} <= set(attrs)

    retail = _load_shared(shared_data, "online_retail/transactions.csv", "online-retail")
    tx = retail["transactions"]
    assert tx.filter(pl.col("quantity") < 0).height > 0  # returns are kept
    assert tx["customer_hash"].null_count() > 0  # NA customers -> null

    insta = _load_shared(shared_data, "instacart", "instacart")
    assert insta["catalogue"]["category_path"].str.contains(" > ").mean() > 0.99


# ----------------------------------------------------------------------------- fixtures

HD_HEADER = "id,product_uid,product_title,search_term,relevance\n"


def _write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return p


def test_latin1_decoded(tmp_path: Path) -> None:
    p = _write(tmp_path, "hd.csv", (HD_HEADER + "1,100,Caf\xe9 Table 36 in.,cafe table,3\n").encode("latin-1"))
    r = load(p, "homedepot")
    assert r["catalogue"]["title"][0] == "Café Table 36 in."
    assert any("latin-1" in n for n in r.notes)


def test_wrong_encoding_strict_utf8_fails_one_line(tmp_path: Path) -> None:
    p = _write(tmp_path, "hd.csv", (HD_HEADER + "1,100,Caf\xe9,cafe,3\n").encode("latin-1"))
    with pytest.raises(DataError) as e:
        load(p, "homedepot", encoding="utf-8")
    assert str(p) in str(e.value) and "UTF-8" in str(e.value) and "\n" not in str(e.value)


def test_binary_file_fails(tmp_path: Path) -> None:
    p = _write(tmp_path, "hd.csv", b"\x1f\x8b\x08\x00\x00\x00binary\x00\x00")
    with pytest.raises(DataError, match="not a text file"):
        load(p, "homedepot")


@pytest.mark.parametrize(
    ("fmt", "content", "column"),
    [
        ("homedepot", "id,product_uid,product_title,search_term\n1,2,t,q\n", "relevance"),
        ("bestbuy-clicks", "user,sku,category,query\nu,1,c,q\n", "click_time"),
        ("online-retail", "InvoiceNo,StockCode,Quantity,InvoiceDate\n1,A,1,2011-01-01 10:00:00\n", "UnitPrice"),
        (
            "fashion",
            "id,gender,masterCategory,subCategory,articleType\n1,Men,Apparel,Topwear,Tshirts\n",
            "productDisplayName",
        ),
        ("wands", "query_id\tquery_class\n1\tChairs\n", "query"),
    ],
)
def test_missing_column_names_file_and_column(tmp_path: Path, fmt: str, content: str, column: str) -> None:
    p = _write(tmp_path, "f.csv", content)
    with pytest.raises(DataError) as e:
        load(p, fmt)
    msg = str(e.value)
    assert str(p) in msg and repr(column) in msg and "\n" not in msg


def test_missing_file_and_empty_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="file not found"):
        load(tmp_path / "nope.csv", "homedepot")
    with pytest.raises(DataError, match="empty file"):
        load(_write(tmp_path, "empty.csv", ""), "homedepot")
    with pytest.raises(DataError, match="empty file"):
        load(_write(tmp_path, "blank.csv", "\n\n  \n"), "online-retail")
    with pytest.raises(DataError, match="no data rows"):
        load(_write(tmp_path, "header.csv", HD_HEADER), "homedepot")
    with pytest.raises(DataError, match="unknown format"):
        load(_write(tmp_path, "x.csv", HD_HEADER), "no-such-format")


def test_bad_rows_quarantined_good_rows_kept(tmp_path: Path) -> None:
    rows = [
        "1,100,Angle Bracket,angle bracket,3",  # good
        "2,100,Angle Bracket,l bracket,abc",  # unparseable number
        "3,101,,shelf,2",  # empty title
        "4,102,Deck Screw,,2",  # empty text
        "1,103,Hinge,door hinge,2.33",  # duplicate id
        "5,104,Wrong,field,count,2",  # wrong field count
        '6,105,"Sheet, Silver",metal sheet,1.67',  # good (quoted comma)
    ]
    p = _write(tmp_path, "hd.csv", HD_HEADER + "\n".join(rows) + "\n")
    r = load(p, "homedepot")
    assert r.rows_read == 7
    assert r["judgements"].height == 2
    assert r["judgements"]["item_id"].to_list() == ["100", "105"]
    assert r["catalogue"].filter(pl.col("item_id") == "105")["title"][0] == "Sheet, Silver"
    q = r.quarantine.sort("row")
    assert q["row"].to_list() == [2, 3, 4, 5, 6]
    assert q["reason"].to_list() == [
        V.UNPARSEABLE_NUMBER,
        V.EMPTY_TITLE,
        V.EMPTY_TEXT,
        V.DUPLICATE_ID,
        V.WRONG_FIELD_COUNT,
    ]
    assert "Wrong,field,count" in q["raw"][4]
    assert r.summary()["quarantined_by_reason"] == {reason: 1 for reason in q["reason"].to_list()}
    assert r["queries"]["query_id"][0] == stable_query_id("Angle  BRACKET ")


def test_online_retail_rules(tmp_path: Path) -> None:
    header = '"InvoiceNo","StockCode","Description","Quantity","InvoiceDate","UnitPrice","CustomerID","Country"\n'
    rows = [
        '"1","A1","MUG",2,"2011-03-10 16:16:00",2.95,NA,"United Kingdom"',
        '"2","A2","RETURN",-5,"12/1/2010 8:26",1.5,12621.0,"Germany"',
        '"3","A3","BAD DEBT",1,"2011-03-10 16:16:00",-11062.06,,"United Kingdom"',
        '"4","A4","X",two,"2011-03-10 16:16:00",1,1,"France"',
        '"5","A5","Y",1,"yesterday",1,1,"France"',
    ]
    r = load(_write(tmp_path, "t.csv", header + "\n".join(rows) + "\n"), "online-retail", salt="pepper")
    tx = r["transactions"]
    assert tx["quantity"].to_list() == [2, -5]
    assert tx["customer_hash"].to_list() == [None, hash_id("12621", "pepper")]
    assert tx["timestamp"][1].month == 12
    assert r.quarantined_by_reason() == {V.NEGATIVE_PRICE: 1, V.UNPARSEABLE_NUMBER: 1, V.BAD_TIMESTAMP: 1}


def test_fashion_unquoted_commas_repaired(tmp_path: Path) -> None:
    header = "id,gender,masterCategory,subCategory,articleType,baseColour,season,year,usage,productDisplayName\n"
    rows = [
        "1,Men,Apparel,Topwear,Tshirts,Blue,Summer,2012,Casual,Blue T-shirt",
        "2,Men,Accessories,Ties,Ties,Pink,Fall,2011,Formal,Pink Tie, Cufflink and Square Set",
        "3,Women,Footwear,Shoes,Heels,Red,Autumn,20x1,Casual,Red Heels",
        "4,Women,Footwear,Shoes,Heels,Red,Winter",
        "5,Unisex,Apparel,Topwear,Jackets,Black,,2013,,Black Jacket",
    ]
    r = load(_write(tmp_path, "styles.csv", header + "\n".join(rows) + "\n"), "fashion")
    cat = r["catalogue"]
    assert cat["item_id"].to_list() == ["1", "2", "5"]
    assert cat["title"][1] == "Pink Tie, Cufflink and Square Set"
    assert cat["season"].to_list() == ["summer", "fall", None]
    assert cat["category_path"][0] == "Apparel > Topwear > Tshirts"
    assert json.loads(cat["attributes"][2]) == {"gender": "Unisex", "baseColour": "Black", "usage": None, "year": 2013}
    assert r.quarantined_by_reason() == {V.UNPARSEABLE_NUMBER: 1, V.WRONG_FIELD_COUNT: 1}


def test_instacart_lookups(tmp_path: Path) -> None:
    d = tmp_path / "insta"
    d.mkdir()
    _write(d, "products_noheader.csv", '1,Chocolate Cookies,61,19\n2,"Salt, Sea",104,13\n3,,61,19\n4,Tea,x,7\n')
    _write(d, "aisles.csv", '"aisle_id","aisle"\n61,"cookies cakes"\n104,"spices seasonings"\n')
    _write(d, "departments.csv", '"department_id","department"\n19,"snacks"\n13,"pantry"\n')
    r = load(d, "instacart")
    cat = r["catalogue"]
    assert cat["category_path"].to_list() == ["snacks > cookies cakes", "pantry > spices seasonings"]
    assert cat["title"][1] == "Salt, Sea"
    assert r.quarantined_by_reason() == {V.EMPTY_TITLE: 1, V.UNPARSEABLE_NUMBER: 1}
    (d / "aisles.csv").unlink()
    with pytest.raises(DataError, match="aisles.csv"):
        load(d / "products_noheader.csv", "instacart")


def _product(sku: str, name: str, price: str, cats: list[str]) -> str:
    cp = "".join(f"<category><id>c{i}</id><name>{c}</name></category>" for i, c in enumerate(cats))
    return (
        f"<product><sku>{sku}</sku><name>{name}</name><regularPrice>{price}</regularPrice>"
        f"<salePrice>{price}</salePrice><customerReviewAverage>4.5</customerReviewAverage>"
        f"<salesRankShortTerm>10</salesRankShortTerm><categoryPath>{cp}</categoryPath>"
        f"<onlineAvailability>true</onlineAvailability></product>"
    )


def test_bestbuy_products_zip(tmp_path: Path) -> None:
    xml = (
        "<products>"
        + "".join(
            [
                _product("1", "Game A", "19.99", ["Best Buy", "Video Games"]),
                _product("1", "Game A again", "19.99", ["Best Buy", "Video Games"]),
                _product("2", "TV", "-5", ["Best Buy", "TVs"]),
                _product("3", "Cable", "abc", ["Best Buy"]),
                _product("4", "", "1", ["Best Buy"]),
                _product("5", "Radio", "", ["Best Buy", "Audio"]),
            ]
        )
        + "</products>"
    )
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("small_product_data.xml", xml)
    r = load(_write(tmp_path, "products.xml.zip", buf.getvalue()), "bestbuy-products")
    cat = r["catalogue"]
    assert cat["item_id"].to_list() == ["1", "5"]
    assert cat["category_path"][0] == "Best Buy > Video Games"
    assert cat["price"][0] == 19.99 and cat["price"][1] is None
    assert r.quarantined_by_reason() == {
        V.DUPLICATE_ID: 1,
        V.NEGATIVE_PRICE: 1,
        V.UNPARSEABLE_NUMBER: 1,
        V.EMPTY_TITLE: 1,
    }
    with pytest.raises(DataError, match="unreadable product XML"):
        load(_write(tmp_path, "broken.xml", "<products><product><sku>1</sku>"), "bestbuy-products")


def test_bestbuy_clicks_salted_and_timestamps(tmp_path: Path) -> None:
    content = (
        "user,sku,category,query,click_time,query_time\n"
        "u1,10,catA,xbox,2011-09-14 12:46:28.66,2011-09-14 12:45:07.064\n"
        "u1,11,catA,Xbox ,2011-09-14 12:46:29,2011-09-14 12:45:07\n"
        "u2,11,catB,xbox,not a time,2011-09-14 12:45:07\n"
    )
    p = _write(tmp_path, "clicks.csv", content)
    a, b = load(p, "bestbuy-clicks", salt="a"), load(p, "bestbuy-clicks", salt="b")
    assert a["events"]["user_hash"][0] != b["events"]["user_hash"][0]
    assert "u1" not in a["events"]["user_hash"].to_list()
    assert a["events"]["timestamp"][0].microsecond == 660_000
    assert a["queries"].height == 1 and a["queries"]["intent"][0] == "catA"
    assert a.quarantined_by_reason() == {V.BAD_TIMESTAMP: 1}


def test_wands_folder_with_products_and_labels(tmp_path: Path) -> None:
    _write(tmp_path, "query.csv", "query_id\tquery\tquery_class\n0\tsalon chair\tMassage Chairs\n1\t\tX\n")
    _write(
        tmp_path,
        "product.csv",
        "product_id\tproduct_name\tproduct_class\tcategory hierarchy\t"
        "product_description\tproduct_features\trating_count\taverage_rating\treview_count\n"
        "7\tchair\tChairs\tFurniture / Chairs\tnice\t\t3\t4.5\t3\n",
    )
    _write(tmp_path, "label.csv", "id\tquery_id\tproduct_id\tlabel\n0\t0\t7\tExact\n1\t0\t8\tIrrelevant\n")
    r = load(tmp_path, "wands")
    assert r["queries"]["intent"].to_list() == ["Massage Chairs"]
    assert r["catalogue"]["category_path"][0] == "Furniture > Chairs"
    assert r["judgements"]["label"].to_list() == [2.0, 0.0]
    assert r.quarantined_by_reason() == {V.EMPTY_TEXT: 1}


def test_canonical_csv_detects_kind_and_validates(tmp_path: Path) -> None:
    header = ",".join(SCHEMAS["catalogue"]) + "\n"
    rows = [
        "a,Parka,,Apparel > Outerwear,{},99.5,4.5,Winter,true,3",
        "b,Shorts,,Apparel,,-1,4,summer,true,1",
        "a,Dup,,Apparel,{},1,4,summer,true,1",
        "c,Hat,,Apparel,{},x,4,summer,yes,1",
        "d,Sandal,,Footwear,{},10,,sometimes,no,",
    ]
    r = load(_write(tmp_path, "items.csv", header + "\n".join(rows) + "\n"), "canonical")
    cat = r["catalogue"]
    V.check_schema(cat, "catalogue")
    assert cat["item_id"].to_list() == ["a"]
    assert cat["season"][0] == "winter"
    assert r.quarantined_by_reason() == {
        V.NEGATIVE_PRICE: 1,
        V.DUPLICATE_ID: 1,
        V.UNPARSEABLE_NUMBER: 1,
        V.BAD_VALUE: 1,
    }
    with pytest.raises(DataError, match="missing required column"):
        load(_write(tmp_path, "q.csv", "query_id,txt\n1,a\n"), "canonical")


def test_canonical_parquet_roundtrip(tmp_path: Path) -> None:
    from shoprank.data.synth import generate

    frames = generate(300, seed=3)
    for kind, df in frames.items():
        df.write_parquet(tmp_path / f"{kind}.parquet")
    r = load(tmp_path, "canonical")
    assert r.quarantine.height == 0
    for kind, df in frames.items():
        assert r[kind].equals(df), kind
    single = load(tmp_path / "events.parquet", "canonical")
    assert set(single.frames) == {"events"}


def test_every_format_registered() -> None:
    assert set(FORMATS) == {
        "homedepot",
        "bestbuy-clicks",
        "bestbuy-products",
        "wands",
        "fashion",
        "online-retail",
        "instacart",
        "canonical",
        "served-log",
    }
    assert "all" in SEASONS

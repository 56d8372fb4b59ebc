"""Rebuild es_ticks_2013-09.parquet from the mlfinpy 0.1.2 wheel (run once, by hand).

    pip download --no-deps mlfinpy==0.1.2 -d /tmp/mlf
    python data/samples/convert_mlfinpy_ticks.py /tmp/mlf/mlfinpy-0.1.2-py3-none-any.whl

The CSV's times are US/Central exchange time (the first trade is Sunday 17:00:00.083, the
CME Globex open); they are converted to UTC here.
"""

from __future__ import annotations

import io
import sys
import zipfile
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

MEMBER = "mlfinpy/dataset/data/tick_data.csv"
OUT = Path(__file__).with_name("es_ticks_2013-09.parquet")


def main(wheel: str) -> None:
    with zipfile.ZipFile(wheel) as zf:
        df = pd.read_csv(io.BytesIO(zf.read(MEMBER)))
    local = pd.to_datetime(df["DateTime"], format="%Y-%m-%d %H:%M:%S.%f")
    utc = local.dt.tz_localize("America/Chicago").dt.tz_convert("UTC").dt.tz_localize(None)
    table = pa.table(
        {
            "timestamp": pa.array(utc.astype("datetime64[ms]"), type=pa.timestamp("ms", tz="UTC")),
            "price": pa.array(df["Price"].to_numpy("float64")),
            "volume": pa.array(df["Volume"].to_numpy("int32")),
        }
    )
    pq.write_table(table, OUT, compression="zstd", compression_level=19, use_dictionary=["price", "volume"])
    print(f"wrote {OUT} ({table.num_rows} ticks)")


if __name__ == "__main__":
    main(sys.argv[1])

"""Identities the profiles carry (Classroom leader/member, EAP-TLS), issued once and kept.

One row per CA and common name (the primary key: two instances issuing for one CN at once end
with one row, see ``app.storage.sql_identities``). The certificate is public and stored as is;
the PKCS#12 (private key inside) and its password are sealed with AES-256-GCM under a key
derived from the CA key (``app.storage.sealing``), so a database dump alone opens nothing.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db.models import TS, Base


class IssuedIdentityRow(Base):
    __tablename__ = "issued_identities"
    ca_fingerprint: Mapped[str] = mapped_column(String(64), primary_key=True)
    cn: Mapped[str] = mapped_column(String(255), primary_key=True)
    cert_der: Mapped[bytes] = mapped_column(LargeBinary)
    cert_sha256: Mapped[str] = mapped_column(String(64))  # what ``put(..., replaces=)`` compares
    not_after: Mapped[dt.datetime] = mapped_column(TS)
    sealed: Mapped[bytes] = mapped_column(LargeBinary)  # AES-GCM: password and PKCS#12
    issued_at: Mapped[dt.datetime] = mapped_column(TS)

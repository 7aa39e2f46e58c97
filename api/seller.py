"""The seller an event's invoices name, as the API takes and returns it: all optional, each checked
(a VAT ID by python-stdnum, a country by CLDR) so a bad one is a 422 that points at its field."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from babel import Locale
from pydantic import AfterValidator, BaseModel, EmailStr, Field, StringConstraints, field_validator
from stdnum import vatin

# Lines of an address or of payment instructions: printable text and line breaks.
Lines = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=1000,
                                         pattern=r"^[^\x00-\x09\x0b-\x1f\x7f]*$")]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200,
                                        pattern=r"^[^\x00-\x1f\x7f]*$")]


def _vat_id(value: str) -> str:
    """A VAT ID that python-stdnum knows as valid for its country, in its compact form (DE136695976)."""
    if not vatin.is_valid(value):
        raise ValueError("Not a valid VAT ID: give the country prefix and the number, e.g. DE136695976")
    return str(vatin.compact(value))


# Codes CLDR names that are no country: unknown region, European Union, Eurozone, United Nations, Outlying Oceania.
NOT_COUNTRIES = frozenset({"ZZ", "EU", "EZ", "UN", "QO"})


def _country(value: str) -> str:
    if value not in Locale("en").territories or not value.isalpha() or value in NOT_COUNTRIES:
        raise ValueError("Unknown country: give its ISO 3166 two-letter code, e.g. DE")
    return value


class SellerIn(BaseModel):
    seller_name: Name | None = None
    seller_address: Annotated[Lines, StringConstraints(max_length=500)] | None = None
    seller_country: Annotated[str, StringConstraints(max_length=2), AfterValidator(_country)] | None = Field(
        default=None, description="ISO 3166 code; default: the VAT ID's prefix, else the timezone's country")
    seller_vat_id: Annotated[str, StringConstraints(strip_whitespace=True, max_length=32),
                             AfterValidator(_vat_id)] | None = None
    tax_rate: Annotated[str, StringConstraints(pattern=r"^\d{1,2}(\.\d{1,2})?$")] = Field(
        default="0", description="Percent, e.g. \"19\" or \"7.5\"; above 0 it needs seller_vat_id")
    prices_include_tax: bool = True
    bank_details: Lines | None = Field(default=None, description="Payment instructions for bank transfers")
    cheque_details: Lines | None = Field(default=None, description="Payment instructions for cheques")
    contact_email: Annotated[EmailStr, StringConstraints(max_length=254)] | None = Field(
        default=None, description="Reply-To of the event's emails")


class SellerOut(BaseModel):
    seller_name: str | None = None
    seller_address: str | None = None
    seller_country: str | None = None
    seller_vat_id: str | None = None
    tax_rate: str = "0.00"
    prices_include_tax: bool = True
    bank_details: str | None = None
    cheque_details: str | None = None
    contact_email: str | None = None

    @field_validator("tax_rate", mode="before")
    @classmethod
    def _percent(cls, value: object) -> object:
        return f"{value:.2f}" if isinstance(value, Decimal) else value


SELLER_FIELDS: set[str] = set(SellerIn.model_fields) - {"tax_rate"}  # tax_rate: a Decimal for the model

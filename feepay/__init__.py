"""feepay: collect Vietnamese administrative fees and charges and reconcile them nightly.

Start with :class:`feepay.FeePay` (see ``docs/api.md``)::

    from feepay import FeePay
    fp = FeePay.open()                      # FEEPAY_DATABASE_URL or sqlite:///feepay.db
    ref = fp.references.issue("HS-0001", "40", ["LP-HT-01"])
"""

from feepay.api import FeePay
from feepay.exceptions import (
    Conflict,
    FeepayError,
    NoCollectionAccount,
    NotFound,
    ParseError,
    SignatureError,
    ValidationError,
)

__version__ = "0.1.0"
__all__ = ["FeePay", "FeepayError", "ValidationError", "NotFound", "Conflict",
           "NoCollectionAccount", "ParseError", "SignatureError", "__version__"]

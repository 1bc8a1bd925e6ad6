"""Typed errors a customer can cause. Each carries a gettext msgid the conversation translates.

`N_` marks the msgids for extraction without translating them here: the message is rendered
later, in the locale of whoever reads it.
"""
from __future__ import annotations

from typing import Any


def N_(msgid: str) -> str:
    return msgid


class FatouraError(Exception):
    """Base of every customer-visible failure. `msgid` is translated with `params`."""

    msgid: str = N_("Something went wrong. Please try again.")

    def __init__(self, detail: str | None = None, **params: Any) -> None:
        self.params = params
        super().__init__(detail or self.msgid.format(**params))


class InvalidInput(FatouraError, ValueError):
    msgid = N_("This value is not valid.")


class InvalidPhoneNumber(InvalidInput):
    msgid = N_("This is not a valid Moroccan phone number. Example: 0612345678 or +212 6 12 34 56 78.")


class InvalidCustomerNumber(InvalidInput):
    msgid = N_("A customer number is made of digits only, as printed at the top of the invoice.")


class InvalidSubscriptionCode(InvalidInput):
    msgid = N_("A subscription code has exactly 4 letters or digits.")


class InvalidPaymentCode(InvalidInput):
    msgid = N_("The payment code is made of digits; it is printed on the first page of the invoice.")


class InvalidEmail(InvalidInput):
    msgid = N_("This e-mail address is not valid.")


class InvalidAmount(InvalidInput):
    msgid = N_("This amount is not valid: it must be a positive number of dirhams with at most 2 decimals.")


class InvalidDate(InvalidInput):
    msgid = N_("This date is not valid. Example: 31/12/2024.")


class InvalidNickname(InvalidInput):
    msgid = N_("A nickname has 1 to 40 characters.")


class TooManyAccounts(InvalidInput):
    msgid = N_("You can link up to {limit} accounts. Unlink one first.")


class UnknownBiller(FatouraError, LookupError):
    msgid = N_("This biller is not available.")


class UnknownService(FatouraError, LookupError):
    msgid = N_("This service is not available for this biller.")


class UnknownTerminal(FatouraError, LookupError):
    msgid = N_("This terminal is not known.")


class UnknownAccount(FatouraError, LookupError):
    msgid = N_("No account was found with this identifier.")


class WrongPaymentCode(FatouraError):
    msgid = N_(
        "The payment code does not match this account. It is printed on the first page of your "
        "invoice, on the 5th line on the left (\u201cCode de paiement\u201d)."
    )


class WrongEmail(FatouraError):
    msgid = N_("This e-mail address is not the one registered for this customer number.")


class InvoiceNotFound(FatouraError, LookupError):
    msgid = N_("This invoice was not found.")


class MixedIssuers(FatouraError):
    msgid = N_("One payment can only hold invoices of one issuer.")


class BillerUnavailable(FatouraError):
    msgid = N_("The biller cannot be reached right now. Please try again in a few minutes.")


class TooManyAttempts(FatouraError):
    msgid = N_("Too many failed attempts. Please wait {minutes} minutes before trying again.")


# --- Checkout and payment ------------------------------------------------------------------


class EmptySelection(InvalidInput):
    msgid = N_("Select at least one invoice to pay.")


class ChannelNotAllowed(FatouraError):
    """params: channel, allowed (tuple of the channels every selected invoice accepts)."""

    msgid = N_("This payment method is not accepted for the selected invoices.")


class InvoiceAlreadyPaid(FatouraError):
    """params: numbers (the invoices already paid, comma-separated)."""

    msgid = N_("Already paid: {numbers}.")


class AlreadyCovered(FatouraError):
    """A still-pending payment (reference, code or card link) covers some selected invoices.

    params: numbers, checkout_id; attribute `checkout` holds the covering Checkout row.
    """

    msgid = N_("A payment in progress already covers {numbers}.")

    def __init__(self, detail: str | None = None, *, checkout=None, **params) -> None:  # noqa: ANN001
        super().__init__(detail, **params)
        self.checkout = checkout


class CheckoutNotFound(FatouraError, LookupError):
    msgid = N_("This payment was not found.")


class CheckoutClosed(FatouraError):
    msgid = N_("This payment can no longer be changed.")


class PaymentUnavailable(FatouraError):
    msgid = N_("This payment method is not available right now. Please try again later or choose another one.")


class UnknownGateway(FatouraError, LookupError):
    msgid = N_("This payment method is not available.")

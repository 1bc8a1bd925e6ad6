"""Payment gateways: CMI card, CMI Fatourati, Amanpay/Tashilat, and their sandboxes, behind one protocol."""

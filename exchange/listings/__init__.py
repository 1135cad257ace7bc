"""Listings and their registration flow (数据产品登记): draft → submitted → under
review → published (or rejected) → delisted, each transition a signed record."""

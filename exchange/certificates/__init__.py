"""Registration certificates (数据产品登记证书): one per published listing version,
holding the three rights (持有权, 加工使用权, 经营权), with a reviewed lifecycle of
signed records (docs/certificates.md)."""

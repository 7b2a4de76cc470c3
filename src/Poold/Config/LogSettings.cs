namespace Poold.Config;

/// <summary><c>log_format</c> [Poold]: pgpool-style text lines, or one compact JSON object per event.</summary>
internal enum LogFormat
{
    Text,
    Json,
}

/// <summary><c>syslog_facility</c>: LOCAL0..LOCAL7, as pgpool-II accepts (the value is the syslog facility code).</summary>
internal enum SyslogFacility
{
    Local0 = 16,
    Local1 = 17,
    Local2 = 18,
    Local3 = 19,
    Local4 = 20,
    Local5 = 21,
    Local6 = 22,
    Local7 = 23,
}

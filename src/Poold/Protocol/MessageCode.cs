namespace Poold.Protocol;

/// <summary>Type bytes of messages a client sends (PostgreSQL docs, "Message Formats").</summary>
internal enum FrontendCode : byte
{
    Bind = (byte)'B',
    Close = (byte)'C',
    CopyData = (byte)'d',
    CopyDone = (byte)'c',
    CopyFail = (byte)'f',
    Describe = (byte)'D',
    Execute = (byte)'E',
    Flush = (byte)'H',
    FunctionCall = (byte)'F',
    Parse = (byte)'P',

    /// <summary>PasswordMessage, SASLInitialResponse and SASLResponse share this byte.</summary>
    Password = (byte)'p',
    Query = (byte)'Q',
    Sync = (byte)'S',
    Terminate = (byte)'X',
}

/// <summary>Type bytes of messages a server sends.</summary>
internal enum BackendCode : byte
{
    Authentication = (byte)'R',
    BackendKeyData = (byte)'K',
    BindComplete = (byte)'2',
    CloseComplete = (byte)'3',
    CommandComplete = (byte)'C',
    CopyData = (byte)'d',
    CopyDone = (byte)'c',
    CopyInResponse = (byte)'G',
    CopyOutResponse = (byte)'H',
    CopyBothResponse = (byte)'W',
    DataRow = (byte)'D',
    EmptyQueryResponse = (byte)'I',
    ErrorResponse = (byte)'E',
    FunctionCallResponse = (byte)'V',
    NegotiateProtocolVersion = (byte)'v',
    NoData = (byte)'n',
    NoticeResponse = (byte)'N',
    NotificationResponse = (byte)'A',
    ParameterDescription = (byte)'t',
    ParameterStatus = (byte)'S',
    ParseComplete = (byte)'1',
    PortalSuspended = (byte)'s',
    ReadyForQuery = (byte)'Z',
    RowDescription = (byte)'T',
}

/// <summary>The int32 that follows 'R' (AuthenticationXXX).</summary>
internal enum AuthRequest
{
    Ok = 0,
    KerberosV5 = 2,
    CleartextPassword = 3,
    Md5Password = 5,
    Gss = 7,
    GssContinue = 8,
    Sspi = 9,
    Sasl = 10,
    SaslContinue = 11,
    SaslFinal = 12,
}

/// <summary>The transaction status byte of ReadyForQuery.</summary>
internal enum TransactionStatus : byte
{
    Idle = (byte)'I',
    InTransaction = (byte)'T',
    Failed = (byte)'E',
}

/// <summary>Request codes of the untyped first packet (length, then this int32).</summary>
internal static class StartupCode
{
    /// <summary>Protocol 3.0: major 3 in the high 16 bits, minor 0.</summary>
    public const int Protocol30 = 3 << 16;

    public const int CancelRequest = (1234 << 16) | 5678;
    public const int SslRequest = (1234 << 16) | 5679;
    public const int GssEncRequest = (1234 << 16) | 5680;
}

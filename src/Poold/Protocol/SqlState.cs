namespace Poold.Protocol;

/// <summary>The SQLSTATE codes Poold sends, named as in PostgreSQL's errcodes.txt.</summary>
internal static class SqlState
{
    // Class 08: connection exception
    public const string ConnectionFailure = "08006";
    public const string SqlClientUnableToEstablishSqlConnection = "08001";
    public const string ProtocolViolation = "08P01";

    // Class 0A: feature not supported
    public const string FeatureNotSupported = "0A000";

    // Class 26: invalid SQL statement name
    public const string InvalidSqlStatementName = "26000";

    // Class 40: transaction rollback
    public const string TransactionRollback = "40000";

    // Class 28: invalid authorization specification
    public const string InvalidAuthorizationSpecification = "28000";
    public const string InvalidPassword = "28P01";

    // Class 53: insufficient resources
    public const string TooManyConnections = "53300";

    // Class 57: operator intervention
    public const string AdminShutdown = "57P01";

    public const string ProgramLimitExceeded = "54000";

    public const string InvalidParameterValue = "22023";
    public const string CannotConnectNow = "57P03";
    public const string IdleSessionTimeout = "57P05";

    // Class XX: internal error
    public const string InternalError = "XX000";
}

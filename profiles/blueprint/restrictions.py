"""Friendly restriction names and the ``com.apple.applicationaccess`` keys they set.

Every friendly key is a boolean with the polarity of the Apple key it maps to:
``camera: false`` sets ``allowCamera = false``; ``classroom_auto_join: true``
sets ``forceClassroomAutomaticallyJoinClasses = true``. Anything not listed can
be set with Apple's own name under ``apple:`` (which wins over friendly keys).
Many of these need a supervised device; the schema checker reports which.
"""

from __future__ import annotations

BOOL_KEYS: dict[str, str] = {
    # apps and stores
    "app_installation": "allowAppInstallation",
    "app_removal": "allowAppRemoval",
    "automatic_app_downloads": "allowAutomaticAppDownloads",
    "in_app_purchases": "allowInAppPurchases",
    "web_distribution_apps": "allowWebDistributionAppInstallation",
    "app_clips": "allowAppClips",
    "books": "allowBookstore",
    "itunes_store": "allowiTunes",
    "news": "allowNews",
    "podcasts": "allowPodcasts",
    "game_center": "allowGameCenter",
    "multiplayer_gaming": "allowMultiplayerGaming",
    "adding_game_center_friends": "allowAddingGameCenterFriends",
    # content
    "explicit_content": "allowExplicitContent",
    "safari": "allowSafari",
    "safari_autofill": "safariAllowAutoFill",
    "siri": "allowAssistant",
    "dictation": "allowDictation",
    "spotlight_internet_results": "allowSpotlightInternetResults",
    "genmoji": "allowGenmoji",
    "image_playground": "allowImagePlayground",
    "writing_tools": "allowWritingTools",
    # camera, sharing, communication
    "camera": "allowCamera",
    "screenshots": "allowScreenShot",
    "airdrop": "allowAirDrop",
    "imessage": "allowChat",
    "facetime": "allowVideoConferencing",
    "find_my_friends": "allowFindMyFriends",
    # iCloud
    "icloud_backup": "allowCloudBackup",
    "icloud_documents": "allowCloudDocumentSync",
    "icloud_photos": "allowCloudPhotoLibrary",
    # device settings the user may change
    "account_modification": "allowAccountModification",
    "erase_content_and_settings": "allowEraseContentAndSettings",
    "passcode_modification": "allowPasscodeModification",
    "device_name_modification": "allowDeviceNameModification",
    "wallpaper_modification": "allowWallpaperModification",
    "bluetooth_modification": "allowBluetoothModification",
    "notifications_modification": "allowNotificationsModification",
    "vpn_creation": "allowVPNCreation",
    "configuration_profile_installation": "allowUIConfigurationProfileInstallation",
    "host_pairing": "allowHostPairing",
    "diagnostics": "allowDiagnosticSubmission",
    "automatic_date_and_time": "forceAutomaticDateAndTime",
    "wifi_allowed_networks_only": "forceWiFiToAllowedNetworksOnly",
    # Classroom
    "screen_observation": "allowRemoteScreenObservation",
    "classroom_auto_join": "forceClassroomAutomaticallyJoinClasses",
    "classroom_unprompted_lock": "forceClassroomUnpromptedAppAndDeviceLock",
    "classroom_unprompted_observation": "forceClassroomUnpromptedScreenObservation",
    "classroom_leave_needs_permission": "forceClassroomRequestPermissionToLeaveClasses",
}

#: ``max_app_rating`` values and Apple's ``ratingApps`` numbers
APP_RATINGS: dict[str, int] = {"none": 0, "4+": 100, "9+": 200, "12+": 300, "17+": 600, "all": 1000}

#: non-boolean friendly keys and their Apple keys
OTHER_KEYS: dict[str, str] = {
    "max_app_rating": "ratingApps",
    "rating_region": "ratingRegion",
    "blocked_apps": "blockedAppBundleIDs",
    "exam_apps": "autonomousSingleAppModePermittedAppIDs",
}

#: Apple key -> friendly key (to point schema findings back at the blueprint line)
FRIENDLY_FOR_APPLE: dict[str, str] = {v: k for k, v in {**BOOL_KEYS, **OTHER_KEYS}.items()}
